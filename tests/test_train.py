"""`python -m gan.train` end to end, and its handling of bad input."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import (
    PROJECT_ROOT,
    assert_usage_error,
    events,
    make_images,
    offline_env,
    run_main,
    run_module,
    write_idx,
)
from PIL import Image
from test_data import BAD_INPUTS

from gan import data, rundir
from gan.callbacks import CLASS_GRID_COLS, CLASS_GRID_SCALE, GRID_ROWS, GRID_SCALE
from gan.checkpoints import Checkpoints, fingerprint
from gan.classifier import CACHE_ENV
from gan.clusters import kmeans, sample_sequence
from gan.config import CHANGEABLE_ON_RESUME, Config
from gan.config import flag as flag_of
from gan.data import to_uint8
from gan.errors import UsageError
from gan.gan import build_gan
from gan.images import make_grid
from gan.models import generator_inputs
from gan.train import _parser, _resolve_config, load_data

METRICS = {"d_loss", "g_loss", "d_real", "d_fake"}


def start_cli(*args, env=None) -> subprocess.Popen:
    """Starts `python -m gan.train ARGS` in the project root; `env`: extra variables."""
    return subprocess.Popen(
        [sys.executable, "-m", "gan.train", *map(str, args)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})},
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    return finish(start_cli(*args, env=env))


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

    logged = events(run_dir)
    for name in METRICS:
        assert logged.SummaryMetadata(name).plugin_data.plugin_name == "scalars"
        assert [e.step for e in logged.Tensors(name)] == [1, 2, 3]
    assert logged.SummaryMetadata("samples").plugin_data.plugin_name == "images"
    grids = logged.Tensors("samples")
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
        (["--batch-size", "0"], "--batch-size must be a number > 0"),
        (["--batch-size", "big"], "--batch-size: expected a whole number, got 'big'"),
        (["--noise-dim", "-3"], "--noise-dim must be a number > 0"),
        (["--noise-dim", "1.5"], "--noise-dim: expected a whole number, got '1.5'"),
        (["--lr", "0"], "--lr must be a number > 0"),
        (["--lr", "fast"], "--lr: expected a number, got 'fast'"),
        (["--beta1", "-0.1"], "--beta1 must be in [0, 1)"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be a number > 0"),
        (["--checkpoint-interval", "nan"], "--checkpoint-interval must be a number > 0"),
        (["--arch", "vgg"], "--arch must be one of mlp, mlp-bn, dcgan, got 'vgg'"),
        (["--g-hidden", "256,0"], "--g-hidden: must be layer widths separated by commas"),
        (
            ["--arch", "dcgan", "--g-hidden", "256,512"],
            "--arch dcgan has fixed layers; --g-hidden is for --arch mlp and mlp-bn only",
        ),
        (["--source", "bundled"], "--source bundled picks where --dataset's images come from"),
        (["--source", "cloud"], "--source must be one of keras, bundled, got 'cloud'"),
        (["--seed", "-1"], "--seed must be in 0..4294967295, got -1"),
        (["--seed", "99999999999999999999"], "--seed must be in 0..4294967295"),
        (["--run=-x"], "--run must be a plain name of letters, digits, '.', '_' and '-', not st"),
        (["--run", "x" * 300], "--run must be at most 255 characters"),
        (["--logdir", ""], "--logdir must not be empty"),
        (["--logdir", "x" * 300], "(File name too long)"),
        (["--data", "x" * 300], "(File name too long)"),
        (["--resume"], "--resume needs --run NAME"),
        (["--resume", "--run", "nothing-here"], "no run to resume at"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(tmp_path, data_dir, args, message):
    result = run_cli("--data", data_dir, "--logdir", tmp_path / "logs", *args)
    assert_usage_error(result, message)
    assert not (tmp_path / "logs").exists()  # nothing written


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_image_files_are_one_line_errors(tmp_path, case):
    make_path, message = BAD_INPUTS[case]
    bad = tmp_path / "bad"
    bad.mkdir()
    result = run_cli("--data", make_path(bad), "--logdir", tmp_path / "logs")
    assert_usage_error(result, message)
    assert not (tmp_path / "logs").exists()


def _a_file(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    return tmp_path / "file"


# Tests run as root, for whom permission bits do not make a directory unwritable: no one can
# create these. /proc takes no new directories, yet access(2) tells root it may write there:
# the CLI then learns it from mkdir itself (after TensorFlow has loaded), still before any write.
UNWRITABLE_LOGDIRS = {
    "parent-is-a-file": lambda tmp_path: _a_file(tmp_path) / "logs",
    "is-a-file": _a_file,
    "in-proc": lambda tmp_path: Path("/proc/gan-test-logs"),
}


@pytest.mark.parametrize("case", UNWRITABLE_LOGDIRS)
def test_unwritable_logdir_is_refused(tmp_path, data_dir, case):
    if case == "in-proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc file system here")
    logdir = UNWRITABLE_LOGDIRS[case](tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = run_cli("--data", data_dir, "--logdir", logdir, "--run", "r")
    assert_usage_error(result, f"cannot create {logdir / 'r'}")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_logdir_on_a_read_only_file_system_is_refused_even_for_root(tmp_path, data_dir):
    """A read-only mount is unwritable for root too. unshare makes one without privileges
    (a user namespace in which this process is root); skipped where that is not allowed."""
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    inner = (
        f"mount -t tmpfs -o ro tmpfs {shlex.quote(str(mount_point))} || exit 99; "
        f"exec {shlex.quote(sys.executable)} -m gan.train --data {shlex.quote(str(data_dir))} "
        f"--logdir {shlex.quote(str(mount_point / 'logs'))}"
    )
    unshare = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", inner]
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command")
    result = subprocess.run(
        unshare,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    if result.returncode == 99 or result.stderr.startswith("unshare:"):
        pytest.skip(f"cannot mount a read-only file system here: {result.stderr.strip()}")
    assert_usage_error(result, f"{mount_point} is not a writable directory")


def _saved_run(run_dir, config, images, epochs_done, trained_config=None):
    """A run directory as an interrupted run leaves it: config.json (`config`) and a checkpoint
    after `epochs_done` epochs of networks built from `trained_config` (default: `config`)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(config.to_json())
    if epochs_done is not None:
        keras.utils.set_random_seed(0)
        model = build_gan(trained_config or config)
        Checkpoints(model, run_dir / "checkpoints", fingerprint(images)).save(epochs_done)


RESUME_PROBLEMS = {  # case -> (keyword arguments of _saved_run, extra flags, message)
    "networks-differ": (
        {"epochs_done": 1, "trained_config": Config(noise_dim=16)},
        [],
        "does not match the configured networks (generator/",
    ),
    "images-differ": ({"epochs_done": 1, "images": make_images(40)}, [], "images differ"),
    "finished": ({"epochs_done": 2}, [], "has trained 2 epochs already; pass --epochs N"),
    "conflicting-flag": ({"epochs_done": 1}, ["--lr", "0.1"], "--lr 0.1 (saved: 0.0002)"),
}


@pytest.mark.parametrize("case", RESUME_PROBLEMS)
def test_resume_problems_are_one_line_errors_and_touch_nothing(tmp_path, data_dir, images, case):
    saved, flags, message = RESUME_PROBLEMS[case]
    config = Config(epochs=2, batch_size=32, noise_dim=8, data=str(data_dir), run="r")
    run_dir = tmp_path / "logs" / "r"
    _saved_run(run_dir, config, **{"images": images, **saved})
    before = _files(run_dir)
    result = run_cli("--logdir", tmp_path / "logs", "--run", "r", "--resume", *flags)
    assert_usage_error(result, message)
    assert _files(run_dir) == before


def _files(run_dir) -> dict:
    """path -> content of every file of a run, but the lock file (gan.rundir.RunLock), which
    a process checking the run may create."""
    return {
        p: p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != rundir.LOCK_FILE
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ("null", "expected a JSON object of options, got NoneType"),
        ("[1, 2]", "expected a JSON object of options, got list"),
        ('{"epochs": 3}', "options missing from config: batch_size, arch, noise_dim, "),
    ],
)
def test_a_config_json_that_is_not_a_whole_config_is_refused(tmp_path, content, message):
    run_dir = tmp_path / "logs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(content)
    result = run_cli("--logdir", tmp_path / "logs", "--run", "r", "--resume")
    assert_usage_error(result, f"--resume: cannot use {run_dir / 'config.json'}: {message}")
    assert [p.name for p in run_dir.iterdir()] == ["config.json"]


def test_a_run_whose_config_json_holds_widths_as_text_resumes_with_them(tmp_path):
    """config.json files written before layer widths were tuples hold them as "256,512"; the
    same widths given again on --resume are no conflict, other widths are."""
    saved = Config(epochs=2, arch="mlp-bn", g_hidden=(64, 32), d_hidden=(16,), run="r")
    saved = saved.replace(logdir=str(tmp_path / "logs")).absolute()
    (tmp_path / "logs" / "r").mkdir(parents=True)
    values = {**json.loads(saved.to_json()), "g_hidden": "64,32", "d_hidden": "16"}
    (tmp_path / "logs" / "r" / "config.json").write_text(json.dumps(values))
    resume = ["--logdir", str(tmp_path / "logs"), "--run", "r", "--resume", "--epochs", "3"]
    resumed = _resolve_config(_parser().parse_args([*resume, "--g-hidden", "64, 32"]))
    assert resumed == saved.replace(epochs=3)
    with pytest.raises(UsageError, match=r"--d-hidden 16,8 \(saved: 16\) conflicting"):
        _resolve_config(_parser().parse_args([*resume, "--d-hidden", "16,8"]))


@pytest.mark.slow
def test_a_run_resumes_from_any_directory_and_with_its_data_moved(tmp_path, data_dir):
    """config.json holds absolute paths; --data may name the same images elsewhere."""
    relative = os.path.relpath(data_dir, PROJECT_ROOT)
    flags = ["--logdir", os.path.relpath(tmp_path / "logs", PROJECT_ROOT), "--run", "r"]
    small = ["--noise-dim", 8, "--no-jit", "--epochs", 1]
    assert run_cli(*flags, "--data", relative, *small).returncode == 0
    config = json.loads((tmp_path / "logs" / "r" / "config.json").read_text())
    assert config["data"] == str(data_dir.resolve())
    assert config["logdir"] == str((tmp_path / "logs").resolve())

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resume = ["--logdir", tmp_path / "logs", "--run", "r", "--resume"]
    same_data = run_module("gan.train", *resume, "--epochs", 2, "--data", f"{data_dir}/",
                           cwd=elsewhere)  # fmt: skip
    assert same_data.returncode == 0, same_data.stderr
    moved = data_dir.rename(tmp_path / "moved")
    gone = run_module("gan.train", *resume, "--epochs", 3, cwd=elsewhere)
    assert_usage_error(gone, f"--data {data_dir}: no such file or directory")
    other = tmp_path / "other"
    other.mkdir()
    write_idx(other / "images-idx3-ubyte", make_images(300, seed=9))
    refused = run_module("gan.train", *resume, "--epochs", 3, "--data", other, cwd=elsewhere)
    assert_usage_error(refused, "the training images differ")
    resumed = run_module("gan.train", *resume, "--epochs", 3, "--data", "../moved", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 2 of 3" in resumed.stdout
    config = json.loads((tmp_path / "logs" / "r" / "config.json").read_text())
    assert config["data"] == str(moved.resolve())


def test_an_existing_run_directory_is_refused_and_left_alone(tmp_path, data_dir):
    run_dir = tmp_path / "logs" / "taken"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("precious")
    result = run_cli("--data", data_dir, "--logdir", tmp_path / "logs", "--run", "taken")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert [p.name for p in run_dir.iterdir()] == ["config.json"]
    assert (run_dir / "config.json").read_text() == "precious"


OFFLINE_NOTICE = "offline: training on the 10,000 bundled MNIST test digits; pass --data for others"


def test_offline_the_default_run_trains_resumes_and_evaluates_on_the_bundled_digits(tmp_path):
    env = {**offline_env(tmp_path), CACHE_ENV: str(tmp_path / "classifiers")}
    where = ("--logdir", tmp_path / "logs", "--run", "offline")
    result = run_cli("--limit", 256, "--epochs", 1, "--noise-dim", 16, *where, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == OFFLINE_NOTICE + "\n"  # and none of TensorFlow's start-up lines
    assert "Training on 256 images" in result.stdout
    run_dir = tmp_path / "logs" / "offline"
    assert json.loads((run_dir / "config.json").read_text())["source"] == "bundled"

    # The recorded source, not a new fallback: the same images, and nothing to say about them.
    resumed = run_cli("--epochs", 2, "--resume", *where, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""
    evaluated = run_module("gan.evaluate", "--run", run_dir, "--limit", 400, "--n", 50, env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr == ""
    real_data = json.loads((run_dir / "eval.json").read_text())[-1]["real_data"]
    assert real_data == {
        "dataset": "mnist",
        "data": None,
        "source": "bundled",
        "limit": 400,
        "images": 400,
    }


def test_help_explains_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    help_text = "".join(result.stdout.split())  # argparse wraps lines, also at hyphens
    options = [flag_of(field.name) for field in dataclasses.fields(Config)]
    for flag in [
        *options,
        "--no-jit",
        "--no-conditional",
        "--resume",
        "--join-timeout",
        "--verbose",
    ]:
        assert re.search(rf"(?<![\w-]){flag}(?![\w-])", result.stdout), flag
    for field in dataclasses.fields(Config):  # each with its own help text
        assert "".join(field.metadata["help"].split()) in help_text, field.name


def test_resume_help_lists_the_options_a_resumed_run_may_change():
    help_text = " ".join(run_cli("--help").stdout.split())
    resume_help = help_text[
        help_text.index("--resume continue") : help_text.index("--join-timeout SECONDS --strategy")
    ]
    assert resume_help.endswith(", ".join(map(flag_of, CHANGEABLE_ON_RESUME)) + " ")


# --- --conditional ---------------------------------------------------------------------------


def test_a_conditional_run_draws_a_row_per_class_and_saves_conditional_networks(tmp_path, data_dir):
    where = ("--logdir", tmp_path / "logs", "--run", "c")
    result = run_cli(
        *("--conditional", "--epochs", 2, "--data", data_dir, "--batch-size", 32),
        *("--noise-dim", 16, "--arch", "mlp-bn", *where),
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "logs" / "c"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["conditional"] is True and config["num_classes"] == 10  # labels 0-9

    generator = keras.models.load_model(run_dir / "generator.keras")
    assert generator_inputs(generator) == (16, 10)
    # The last grid: class k in row k, the same noise (--seed 0's) in each column.
    noise = np.random.default_rng(0).standard_normal((CLASS_GRID_COLS, 16), np.float32)
    inputs = [np.tile(noise, (10, 1)), np.repeat(np.arange(10, dtype=np.int32), CLASS_GRID_COLS)]
    images = to_uint8(generator(inputs, training=False))
    expected = make_grid(images, 10, CLASS_GRID_COLS, scale=CLASS_GRID_SCALE)
    np.testing.assert_array_equal(
        np.asarray(Image.open(run_dir / "samples/epoch_002.png")), expected
    )
    *_, png = events(run_dir).Tensors("samples")[-1].tensor_proto.string_val
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)  # TensorBoard
    discriminator = keras.models.load_model(run_dir / "discriminator.keras")
    assert discriminator([np.asarray(generator(inputs)), inputs[1]]).shape == (100, 1)


def test_more_clusters_than_images_is_a_one_line_error_before_anything_is_written(
    tmp_path, data_dir
):
    logs = tmp_path / "logs"
    flags = ("--data", data_dir, "--limit", 4, "--batch-size", 2, "--logdir", logs)
    result = run_main("gan.train", "--self-condition", 5, *flags)
    assert_usage_error(result, "--self-condition 5: more clusters than the 4 training images")
    assert not logs.exists()


def test_a_self_conditioned_run_draws_its_grid_at_the_clusters_shares(tmp_path, data_dir, images):
    where = ("--logdir", tmp_path / "logs", "--run", "s")
    result = run_cli(
        *("--self-condition", 3, "--epochs", 2, "--data", data_dir, "--batch-size", 32),
        *("--noise-dim", 16, *where),
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "logs" / "s"
    ids = np.load(run_dir / "clusters.npz")["clusters"]
    np.testing.assert_array_equal(ids, kmeans(images, 3))
    generator = keras.models.load_model(run_dir / "generator.keras")
    # The last grid: 5x5 of --seed 0's noise, each cluster at its share of the images.
    noise = np.random.default_rng(0).standard_normal((GRID_ROWS * GRID_ROWS, 16), np.float32)
    labels = sample_sequence(ids, 3, GRID_ROWS * GRID_ROWS).astype(np.int32)
    assert len(set(labels)) == 3
    images = to_uint8(generator([noise, labels], training=False))
    expected = make_grid(images, GRID_ROWS, GRID_ROWS, scale=GRID_SCALE)
    np.testing.assert_array_equal(
        np.asarray(Image.open(run_dir / "samples/epoch_002.png")), expected
    )


def test_a_conditional_run_on_images_without_labels_is_refused_naming_what_was_looked_for(
    tmp_path, data_dir
):
    (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    result = run_cli("--conditional", "--data", data_dir, "--logdir", tmp_path / "logs")
    assert_usage_error(
        result,
        "--conditional needs the class of every image: "
        f"{data_dir / 't10k-images-idx3-ubyte.gz'}: no label file t10k-labels-idx1-ubyte.gz "
        "beside it",
    )
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-classes", "10"], "--num-classes is for --conditional runs only"),
        (["--conditional", "--num-classes", "5"], "--num-classes 5: the training labels go up"),
        (["--conditional", "--num-classes", "1"], "--num-classes must be in 2..256, got 1"),
    ],
)
def test_bad_conditional_options_are_one_line_errors(tmp_path, data_dir, args, message):
    result = run_cli("--data", data_dir, "--batch-size", 32, "--logdir", tmp_path / "logs", *args)
    assert_usage_error(result, message)
    assert not (tmp_path / "logs").exists()


def test_conditional_training_data_comes_with_labels_from_every_source(monkeypatch):
    bundled = load_data(Config(conditional=True, source="bundled", limit=50))
    np.testing.assert_array_equal(bundled[1], data.read_source("mnist", "bundled")[1][:50])
    assert load_data(Config(source="bundled", limit=50))[1] is None  # unconditional
    images, labels = make_images(20), np.arange(20) % 10  # as keras.datasets gives them
    monkeypatch.setattr(data, "download_labelled", lambda dataset: (images, labels))
    keras_images, keras_labels = load_data(Config(conditional=True, source="keras", limit=12))
    np.testing.assert_array_equal(keras_images, images[:12])
    np.testing.assert_array_equal(keras_labels, labels[:12])
