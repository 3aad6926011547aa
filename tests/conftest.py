"""Shared fixtures: tiny image sets written by the tests themselves (never the network)."""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def run_module(module: str, *args, cwd=PROJECT_ROOT, env=None) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` (arguments str()-ed) with this checkout's `gan` first on the path,
    output captured as text. env: variables to set on top of the current environment."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})},
    )


def run_main(module: str, *args, cwd=PROJECT_ROOT, env=None) -> subprocess.CompletedProcess:
    """What `run_module` gives, but run in this process through MODULE.main(argv), within `cwd`
    and with `env` set: for tests of what a command does, without a new process importing
    TensorFlow (seconds each). What only a new process shows (TensorFlow's C++ lines held
    back, an error before TensorFlow loads, signals) is tested through run_module."""
    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    directory, environ = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = importlib.import_module(module).main(argv)
            except SystemExit as exit:  # argparse: --help, a bad flag
                status = exit.code
    finally:
        os.chdir(directory)
        os.environ.clear()
        os.environ.update(environ)
    assert isinstance(status, int), f"{module}.main returned {status!r}, not an exit status"
    output = stdout.getvalue(), stderr.getvalue()
    return subprocess.CompletedProcess([module, *argv], status, *output)


def offline_env(directory: Path) -> dict:
    """Environment variables under which keras.datasets can get nothing, without the network
    being tried: an empty cache (KERAS_HOME under `directory`) and downloads through a proxy on
    a closed local port."""
    proxy = "http://127.0.0.1:9"
    return {
        "KERAS_HOME": str(directory / "keras-home"),
        **{name: proxy for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")},
        **{name: "" for name in ("no_proxy", "NO_PROXY")},
    }


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Writes `array` as an idx file, gzip-compressed if the name ends in .gz."""
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def make_images(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 28, 28): a bright blob at a random place on black, like a crude digit."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, size=(count, 2))
    distance = np.hypot(rows - centres[:, 0, None, None], cols - centres[:, 1, None, None])
    return np.clip(255 * np.exp(-((distance / 4) ** 2)), 0, 255).astype(np.uint8)


@pytest.fixture
def images() -> np.ndarray:
    return make_images(300)


@pytest.fixture
def data_dir(tmp_path, images) -> Path:
    """A directory laid out like ../shared/data/mnist: gz image + label files."""
    directory = tmp_path / "digits"
    directory.mkdir()
    write_idx(directory / "t10k-images-idx3-ubyte.gz", images)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.arange(len(images)) % 10)
    return directory


def make_labelled_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (count, 28, 28) and labels (count,) 0-9: class k is a blob at the k-th of ten
    places on a circle (jittered by a pixel), so a small classifier tells them apart at once."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    angles = 2 * np.pi * labels / 10
    centres = 14 + 8 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    centres += rng.uniform(-1, 1, size=(count, 2))
    rows, cols = np.mgrid[:28, :28]
    distance = np.hypot(rows - centres[:, 0, None, None], cols - centres[:, 1, None, None])
    images = np.clip(255 * np.exp(-((distance / 3) ** 2)), 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def make_gan(seed=0, noise_dim=8, **options):
    """A small GAN (gan.gan.build_gan, no XLA): Keras' random seed and the config's seed both
    `seed`."""
    import keras

    from gan.config import Config
    from gan.gan import build_gan

    keras.utils.set_random_seed(seed)
    return build_gan(Config(noise_dim=noise_dim, jit=False, seed=seed, **options))


def assert_usage_error(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit status 2 and one line on stderr that contains `message`, no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def quick_classifier():
    """The gan.classifier.ClassifierSpec of the tests: a few epochs, enough for tiny images."""
    from gan.classifier import ClassifierSpec

    return ClassifierSpec(epochs=3, batch_size=32)


@pytest.fixture(scope="session")
def evaluator(tmp_path_factory):
    """A gan.evaluation.Evaluator of 400 tiny labelled images, its classifier trained once
    for the session (quick_classifier)."""
    from gan.evaluation import Evaluator

    images, labels = make_labelled_images(400)
    cache = tmp_path_factory.mktemp("evaluator-cache")
    return Evaluator(images, labels, cache_dir=cache, spec=quick_classifier())


def events(run_dir):
    """A run directory's TensorBoard events, every tensor summary kept (an EventAccumulator)."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


HPARAMS_TAGS = "_hparams_/"  # the run's options, logged once per start at step 0, not per epoch


def event_steps(events_file) -> list[tuple[str, int]]:
    """(tag, step) of every summary in one events file, in order, but the HParams records."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [
        (value.tag, event.step)
        for event in EventFileLoader(str(events_file)).Load()
        for value in event.summary.value
        if not value.tag.startswith(HPARAMS_TAGS)
    ]


def eval_scalars(run_dir) -> dict:
    """TensorBoard scalars eval* of a run directory: tag -> [(step, value)]."""
    from tensorboard.util import tensor_util

    accumulator = events(run_dir)
    return {
        tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in tensors]
        for tag in accumulator.Tags()["tensors"]
        if tag.startswith("eval") and (tensors := accumulator.Tensors(tag))
    }


@pytest.fixture
def run_dir(tmp_path):
    """A finished unconditional run (tests/generators.py): config.json and generator.keras."""
    from generators import write_run

    return write_run(tmp_path / "logs" / "r")


@pytest.fixture
def conditional_run_dir(tmp_path):
    """A finished conditional run (tests/generators.py): config.json and generator.keras."""
    from generators import write_run

    return write_run(tmp_path / "logs" / "c", conditional=True)
