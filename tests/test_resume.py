"""`python -m gan.train` killed, interrupted or diverging, and `--resume`.

The training process is stopped by the documented test hook GAN_TEST_SIGNAL (gan.safety):
it sends itself the signal at an exact global step or epoch end. Killing it from outside by
timing would be flaky, since an epoch of these runs lasts milliseconds.
"""

from __future__ import annotations

import collections
import csv
import json
import re
import shlex
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_images, write_idx
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from test_train import METRICS, finish, run_cli, start_cli

HOOK = "GAN_TEST_SIGNAL"


def _summaries(run_dir) -> dict:
    """tag -> [(step, value bytes), ...] over every events file of the run, duplicates kept."""
    found = collections.defaultdict(list)
    for path in sorted(run_dir.glob("*tfevents*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                # The HParams records (the run's options, step 0) are written at every start,
                # also a resumed one; the per-epoch summaries must not repeat.
                if not value.tag.startswith("_hparams_/"):
                    found[value.tag].append((event.step, value.tensor.SerializeToString()))
    return found


def _steps(run_dir) -> dict:
    return {tag: [step for step, _ in values] for tag, values in _summaries(run_dir).items()}


def _history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as file:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(file)]


def _latest(run_dir) -> str:
    return tf.train.latest_checkpoint(run_dir / "checkpoints").rsplit("/", 1)[-1]


def _checkpoint_values(path) -> dict:
    """Every value of the training state in a checkpoint, as bytes (not the manager's count of
    saves, which restarts in a new process, nor the object graph)."""
    reader = tf.train.load_checkpoint(str(path))
    return {
        name: np.asarray(reader.get_tensor(name)).tobytes()
        for name, _ in tf.train.list_variables(str(path))
        if not name.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))
    }


def _network_weights(run_dir) -> list[bytes]:
    return [
        weight.tobytes()
        for name in ("generator.keras", "discriminator.keras")
        for weight in keras.models.load_model(run_dir / name).get_weights()
    ]


@pytest.mark.slow
def test_run_killed_during_epoch_3_resumes_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    """The issue's scenario: 4 epochs on 2,000 images with --deterministic, SIGKILL during
    epoch 3 (15 steps an epoch: global step 37 is epoch 3, step 7), then --resume. The resumed
    run is killed once more, at the end of epoch 3 after its summaries, grid and history row
    but before its checkpoint, so that the roll-back of those outputs is exercised too."""
    images = write_idx(tmp_path / "images-idx3-ubyte", make_images(2000))
    logs = tmp_path / "logs"
    flags = ["--epochs", 4, "--data", images, "--logdir", logs, "--deterministic"]
    flags += ["--sample-every", 1, "--checkpoint-every", 1]
    whole = start_cli(*flags, "--run", "whole")  # side by side: two cores
    killed = finish(start_cli(*flags, "--run", "killed", env={HOOK: "SIGKILL@37"}))
    assert finish(whole).returncode == 0
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    whole_dir, killed_dir = logs / "whole", logs / "killed"
    assert _latest(killed_dir) == "ckpt-2"
    assert all(steps == [1, 2] for steps in _steps(killed_dir).values())

    resume = ["--logdir", logs, "--run", "killed", "--resume"]
    killed_again = run_cli(*resume, env={HOOK: "SIGKILL@epoch3"})
    assert killed_again.returncode == -signal.SIGKILL, killed_again.stderr
    assert _latest(killed_dir) == "ckpt-2"
    # Epoch 3 was written, but not checkpointed: the next resume must drop it.
    assert all(steps == [1, 2, 3] for steps in _steps(killed_dir).values())
    assert [row["epoch"] for row in _history(killed_dir)] == ["1", "2", "3"]

    resumed = run_cli(*resume)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stdout and "after epoch 2 of 4" in resumed.stdout
    assert _checkpoint_values(killed_dir / "checkpoints" / "ckpt-4") == _checkpoint_values(
        whole_dir / "checkpoints" / "ckpt-4"
    )  # weights, optimizer moments and steps, RNG states: bit for bit
    assert _network_weights(killed_dir) == _network_weights(whole_dir)
    # TensorBoard: every epoch exactly once, with the uninterrupted run's values.
    assert _summaries(killed_dir) == _summaries(whole_dir)
    assert set(_steps(killed_dir)) == METRICS | {"samples"}
    assert all(steps == [1, 2, 3, 4] for steps in _steps(killed_dir).values())
    assert _history(killed_dir) == _history(whole_dir)
    grids = sorted((killed_dir / "samples").iterdir())
    assert [p.name for p in grids] == [f"epoch_00{n}.png" for n in (1, 2, 3, 4)]
    assert [p.read_bytes() for p in grids] == [
        p.read_bytes() for p in sorted((whole_dir / "samples").iterdir())
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "conditional, schedule",
    [([], "linear"), (["--conditional"], "cosine"), (["--self-condition", 4], "cosine")],
    ids=["unconditional", "conditional", "self-conditioned"],
)
def test_quality_options_resume_bitwise_equal_to_an_uninterrupted_run(
    tmp_path, conditional, schedule
):
    """Every state the quality options add (the generator's average, the decaying learning
    rates' step counts, the augmentation's random numbers, spectral norm's power-iteration
    vectors) is in the checkpoint: killed at the end of epoch 2 before its checkpoint, then
    resumed, a run ends bit for bit where an uninterrupted one does. So does a conditional
    run: its fake labels come from the noise seed's state, its real ones with the data; and a
    self-conditioned one, which reads its clusters back from the run directory."""
    images = write_idx(tmp_path / "images-idx3-ubyte", make_images(512))
    write_idx(tmp_path / "labels-idx1-ubyte", np.arange(512) % 10)  # unconditional: unused
    logs = tmp_path / "logs"
    flags = ["--epochs", 3, "--data", images, "--logdir", logs, "--deterministic"]
    flags += [
        "--checkpoint-every",
        1,
        "--arch",
        "mlp-bn",
        "--ema",
        0.9,
        "--lr-schedule",
        schedule,
        "--loss",
        "hinge",
    ]
    flags += ["--augment", "translation,cutout", "--r1", 1, "--spectral-norm", "--d-lr", 4e-4]
    flags += conditional
    whole = start_cli(*flags, "--run", "whole")
    killed = run_cli(*flags, "--run", "killed", env={HOOK: "SIGKILL@epoch2"})
    assert finish(whole).returncode == 0
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_cli("--logdir", logs, "--run", "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 1 of 3" in resumed.stdout
    whole_dir, killed_dir = logs / "whole", logs / "killed"
    final = _checkpoint_values(killed_dir / "checkpoints" / "ckpt-3")
    assert any(name.startswith("ema_generator/") for name in final)
    assert final == _checkpoint_values(whole_dir / "checkpoints" / "ckpt-3")
    assert _network_weights(killed_dir) == _network_weights(whole_dir)
    raw = [keras.models.load_model(d / "generator_raw.keras") for d in (killed_dir, whole_dir)]
    assert [w.tobytes() for w in raw[0].get_weights()] == [
        w.tobytes() for w in raw[1].get_weights()
    ]
    assert _history(killed_dir) == _history(whole_dir)
    assert json.loads((killed_dir / "config.json").read_text())["num_classes"] == (
        10 if "--conditional" in conditional else None
    )
    if "--self-condition" in conditional:
        saved = [np.load(d / "clusters.npz")["clusters"] for d in (killed_dir, whole_dir)]
        np.testing.assert_array_equal(*saved)
        assert len(set(saved[0])) > 1


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_prints_how_to_resume(tmp_path, data_dir):
    logs = tmp_path / "logs"
    flags = ["--epochs", 3, "--data", data_dir, "--logdir", logs, "--run", "r"]
    flags += ["--batch-size", 32, "--noise-dim", 16, "--checkpoint-every", 2, "--no-jit"]
    # 300 images, 9 steps an epoch: Ctrl-C during epoch 1, which is then finished and saved
    # although --checkpoint-every 2 would not save it.
    stopped = run_cli(*flags, env={HOOK: "SIGINT@5"})
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "Traceback" not in stopped.stderr
    last = stopped.stderr.splitlines()[-1]
    assert last.startswith("Stopped by SIGINT after epoch 1 of 3; checkpoint saved; resume with:")
    run_dir = logs / "r"
    assert _latest(run_dir) == "ckpt-1"

    command = shlex.split(last.split("resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "gan.train"]
    resumed = run_cli(*command[3:], "--epochs", 4)  # --epochs may grow on resume
    assert resumed.returncode == 0, resumed.stderr
    epochs = re.findall(r"^Epoch:(\d+)", resumed.stdout, re.MULTILINE)
    assert epochs == ["2", "3", "4"]
    steps = _steps(run_dir)
    assert all(steps[name] == [1, 2, 3, 4] for name in METRICS)
    assert steps["samples"] == [1, 4]  # the first and the last epoch (--sample-every 10)
    state = (run_dir / "checkpoints" / "checkpoint").read_text()
    kept = re.findall(r'all_model_checkpoint_paths: "(.*)"', state)
    assert kept == ["ckpt-1", "ckpt-2", "ckpt-4"]  # every 2nd, the last; the newest 3 kept
    assert '"epochs": 4' in (run_dir / "config.json").read_text()


def test_a_diverging_run_stops_with_exit_status_1_and_names_where(tmp_path, data_dir):
    logs = tmp_path / "logs"
    flags = ["--epochs", 2, "--data", data_dir, "--logdir", logs, "--run", "r", "--no-jit"]
    result = run_cli(*flags, "--batch-size", 32, "--lr", "1e10")  # weights overflow at once
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    # A NaN loss names its step; NaN weights behind finite losses are caught at the epoch's end
    # (see callbacks.StopOnNonFinite). Which comes first depends on the CPU kernels.
    where = r"(loss is nan.* at epoch 1, step \d of 9|non-finite during epoch 1)"
    assert re.search(rf"^python -m gan.train: error: .*{where}: training diverged", last), last
    assert last.endswith("start a new run with a lower --lr or another --seed")
    assert _latest(logs / "r") == "ckpt-0"  # the state before training: the last good one
    assert not (logs / "r" / "history.csv").exists() and not _steps(logs / "r")


def _truncate_data(prefix):
    (data_file,) = prefix.parent.glob(prefix.name + ".data-*")
    data_file.write_bytes(data_file.read_bytes()[:-100])


def _small_run(tmp_path, data_dir):
    """LOGDIR, LOGDIR/r and the flags of a small run r that checkpoints every epoch."""
    logs = tmp_path / "logs"
    flags = ["--data", data_dir, "--logdir", logs, "--run", "r", "--noise-dim", 8, "--no-jit"]
    return logs, logs / "r", [*flags, "--checkpoint-every", 1]


@pytest.mark.slow
def test_resume_skips_a_damaged_checkpoint_and_writes_every_epoch_once(tmp_path, data_dir):
    logs, run_dir, flags = _small_run(tmp_path, data_dir)
    assert run_cli(*flags, "--epochs", 3).returncode == 0
    _truncate_data(run_dir / "checkpoints" / "ckpt-3")
    resumed = run_cli("--logdir", logs, "--run", "r", "--resume", "--epochs", 4)
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot read checkpoint ckpt-3 (" in warnings[0]
    assert warnings[0].endswith("falling back to ckpt-2")
    assert "after epoch 2 of 4" in resumed.stdout
    assert [row["epoch"] for row in _history(run_dir)] == ["1", "2", "3", "4"]
    steps = _steps(run_dir)
    assert all(steps[name] == [1, 2, 3, 4] for name in METRICS)
    assert _latest(run_dir) == "ckpt-4"


@pytest.mark.slow
def test_a_run_without_a_complete_checkpoint_restarts_in_place_from_epoch_0(tmp_path, data_dir):
    """As a kill or a full disk during ckpt-0 leaves a run: config.json, no checkpoint."""
    logs, run_dir, flags = _small_run(tmp_path, data_dir)
    assert run_cli(*flags, "--epochs", 1).returncode == 0
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    (run_dir / "checkpoints" / "ckpt-0_temp").mkdir()
    resumed = run_cli("--logdir", logs, "--run", "r", "--resume", "--epochs", 2)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 0 of 2" in resumed.stdout
    assert [row["epoch"] for row in _history(run_dir)] == ["1", "2"]
    assert all(_steps(run_dir)[name] == [1, 2] for name in METRICS)
    assert sorted(p.name.split(".")[0] for p in (run_dir / "checkpoints").glob("*.index")) == [
        "ckpt-0",
        "ckpt-1",
        "ckpt-2",
    ]
