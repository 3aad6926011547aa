"""`python -m gan.train` end to end, and its handling of bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from gan.callbacks import GRID_ROWS, GRID_SCALE

METRICS = {"d_loss", "g_loss", "d_real", "d_fake"}


def run_cli(*args, cwd=PROJECT_ROOT):
    return subprocess.run(
        [sys.executable, "-m", "gan.train", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )


def _events(run_dir):
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


def test_end_to_end_run_writes_config_events_grids_and_networks(tmp_path, data_dir):
    result = run_cli(
        "--epochs",
        3,
        "--data",
        data_dir,
        "--limit",
        200,
        "--batch-size",
        32,
        "--logdir",
        tmp_path / "logs",
        "--run",
        "e2e",
        "--sample-every",
        2,
        "--noise-dim",
        16,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary_lines = [line for line in result.stdout.splitlines() if line.startswith("Epoch:")]
    assert [line.split()[0] for line in summary_lines] == ["Epoch:1", "Epoch:2", "Epoch:3"]
    run_dir = tmp_path / "logs" / "e2e"

    config = json.loads((run_dir / "config.json").read_text())
    assert config["epochs"] == 3 and config["limit"] == 200 and config["noise_dim"] == 16
    assert config["run"] == "e2e" and config["lr"] == 2e-4
    assert config["jit"] is False  # resolved: no GPU here
    assert config["steps_per_call"] == 6  # 200 // 32 = 6 steps per epoch; at most 32 per call

    events = _events(run_dir)
    for name in METRICS:
        assert events.SummaryMetadata(name).plugin_data.plugin_name == "scalars"
        assert [e.step for e in events.Tensors(name)] == [1, 2, 3]
    assert events.SummaryMetadata("samples").plugin_data.plugin_name == "images"
    grids = events.Tensors("samples")
    assert [e.step for e in grids] == [1, 2, 3]  # epoch 1, every 2nd, and the last
    width, height, png = grids[-1].tensor_proto.string_val
    picture = Image.open(io.BytesIO(png))
    side = (GRID_ROWS * 30 + 2) * GRID_SCALE  # 28 px digits + 2 px padding
    assert picture.size == (int(width), int(height)) == (side, side)

    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
        "epoch_003.png",
    ]
    with open(run_dir / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert (run_dir / "losses.png").stat().st_size > 0

    generator = keras.models.load_model(run_dir / "generator.keras")
    images = np.asarray(generator(np.zeros((4, 16), np.float32)))
    assert images.shape == (4, 28, 28, 1) and np.abs(images).max() <= 1
    discriminator = keras.models.load_model(run_dir / "discriminator.keras")
    assert discriminator(images).shape == (4, 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs must be a number > 0"),
        (["--epochs", "ten"], "--epochs: expected a whole number, got 'ten'"),
        (["--lr", "-1"], "--lr must be a number > 0"),
        (["--beta1", "1"], "--beta1 must be in [0, 1)"),
        (["--dataset", "cifar10"], "--dataset must be one of mnist, fashion_mnist"),
        (["--data", "no/such/dir"], "no such file or directory"),
        (["--limit", "10"], "fewer than one batch of 128"),
        (["--colour", "red"], "unrecognized arguments: --colour red"),
        (["--profile-steps", "5"], "--profile-steps must be FIRST,LAST"),
        (
            ["--epochs", "3", "--profile-steps", "5,7"],
            "ends at step 7, but the run has only 6 steps",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(tmp_path, data_dir, args, message):
    result = run_cli("--data", data_dir, "--logdir", tmp_path / "logs", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()  # nothing written


def test_an_existing_run_directory_is_refused_and_left_alone(tmp_path, data_dir):
    run_dir = tmp_path / "logs" / "taken"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("precious")
    result = run_cli("--data", data_dir, "--logdir", tmp_path / "logs", "--run", "taken")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert [p.name for p in run_dir.iterdir()] == ["config.json"]
    assert (run_dir / "config.json").read_text() == "precious"


def test_help_explains_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in [
        "--epochs",
        "--batch-size",
        "--noise-dim",
        "--lr",
        "--beta1",
        "--dataset",
        "--data",
        "--limit",
        "--logdir",
        "--run",
        "--seed",
        "--jit",
        "--no-jit",
        "--sample-every",
        "--arch",
        "--profile-steps",
    ]:
        assert flag in result.stdout
