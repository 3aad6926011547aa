"""Scaling out: tf.distribute strategies and mixed precision.

The distributed runs happen in fresh processes (tests/distributed_runs.py): the CPU is split
into two logical devices for MirroredStrategy, and two workers on 127.0.0.1 form a
MultiWorkerMirroredStrategy cluster. Both need TensorFlow uninitialised, which this process
is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest
from conftest import PROJECT_ROOT, make_images, write_idx
from distributed_runs import BATCH, EPOCHS, IMAGES, METRICS, NOISE_DIM

from gan import data, distribute
from gan.config import Config
from gan.errors import UsageError
from gan.gan import build_gan
from gan.models import GENERATOR_EMBEDDING, PROJECTION, with_labels
from gan.optimizers import FusedAdam

SCRIPT = PROJECT_ROOT / "tests" / "distributed_runs.py"
TIMEOUT = 300  # seconds for a distributed run; a few steps take ~20 s on 2 busy cores


def _python(*args, env=None):
    """A fresh Python process running this checkout's gan package. Its output goes to files
    rather than pipes: a worker blocked on a full pipe would stall its whole cluster."""
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, *map(str, args)],
        cwd=PROJECT_ROOT,
        env={**(env or os.environ), "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,  # its own process group, so that it can be killed whole
    )
    process.outputs = stdout, stderr
    return process


def _finish(processes, timeout=TIMEOUT) -> list[tuple[int, str, str]]:
    """Waits for all processes (together at most `timeout` seconds), then kills whatever
    still runs (status -9). Returns (status, stdout, stderr) of each."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    results = []
    for process in processes:
        texts = []
        for output in process.outputs:
            output.seek(0)
            texts.append(output.read())
            output.close()
        results.append((process.returncode, *texts))
    return results


def _load(path) -> dict:
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def _part(results: dict, prefix: str) -> dict:
    """The results saved under `prefix/`, without the prefix."""
    return {k[len(prefix) + 1 :]: v for k, v in results.items() if k.startswith(prefix + "/")}


def _weights(results: dict) -> dict:
    return {k: v for k, v in results.items() if k.startswith("v")}


def assert_same_training(actual: dict, expected: dict, atol_fraction=1e-5):
    """Every variable (weights, seeds, Adam's step counts and moments) equal up to float32
    summation order: each element within 1e-4 of itself or atol_fraction of its variable's largest
    magnitude (Adam's update of a near-zero gradient magnifies rounding differences). Adam's
    moments are proportional to the gradients, so a gradient off by a factor (a loss averaged
    wrongly over the replicas) fails here even where Adam's normalised update hides it."""
    expected, actual = _weights(expected), _weights(actual)
    assert expected and actual.keys() == expected.keys()
    for key, value in expected.items():
        scale = float(np.abs(value).max()) or 1.0
        np.testing.assert_allclose(
            actual[key], value, rtol=1e-4, atol=atol_fraction * scale, err_msg=key
        )


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> dict:
    """The results of `distributed_runs.py mirrored` (the CPU split into 2 devices)."""
    out = tmp_path_factory.mktemp("mirrored")
    [(status, _, stderr)] = _finish([_python(SCRIPT, "mirrored", out)])
    assert status == 0, stderr[-3000:]
    return _load(out / "results.npz")


def test_mirrored_strategy_replicates_over_the_split_cpu(mirrored):
    assert int(mirrored["replicas"]) == 2
    runs = ("mirrored", "mirrored_k", "mirrored_float16", "mirrored_ema", "single_to_mirrored")
    for run in runs:
        assert _part(mirrored, run)["replicas_agree"], run  # the replicas' copies stay equal


def test_one_mirrored_step_equals_one_single_device_step(mirrored):
    single, replicated = _part(mirrored, "single/first"), _part(mirrored, "mirrored/first")
    assert_same_training(replicated, single)
    assert int(_part(mirrored, "mirrored")["first:d_steps"]) == 1
    for name in METRICS:  # the metrics are the global batch's, not one replica's
        key = f"first:{name}"
        assert _part(mirrored, "mirrored")[key] == pytest.approx(
            _part(mirrored, "single")[key], rel=1e-5
        )


@pytest.mark.parametrize("run", ["mirrored", "mirrored_k"], ids=["1-step-per-call", "4-per-call"])
def test_mirrored_training_equals_single_device_training(mirrored, run):
    """Two epochs of 4 steps, through fit; with 4 steps per call the step runs in
    gan.distribute's train function instead of Keras'."""
    single, replicated = _part(mirrored, "single"), _part(mirrored, run)
    assert int(replicated["steps_per_execution"]) == (4 if run == "mirrored_k" else 1)
    assert_same_training(replicated, single)
    assert int(replicated["d_steps"]) == EPOCHS * IMAGES // BATCH
    for name in METRICS:
        np.testing.assert_allclose(
            replicated[f"history:{name}"], single[f"history:{name}"], rtol=1e-5, err_msg=name
        )


def test_mirrored_generator_average_equals_the_single_devices(mirrored):
    """--ema under two replicas: every variable, the average generator's (weights and
    BatchNorm statistics) included, follows one device's training."""
    single, replicated = _part(mirrored, "single_ema"), _part(mirrored, "mirrored_ema")
    assert len(_weights(single)) > len(_weights(_part(mirrored, "single")))  # the average's
    # The average mixes each step's rounding differences (the replicas sum BatchNorm's
    # statistics in another order) into values that start near 0, such as the biases.
    assert_same_training(replicated, single, atol_fraction=1e-3)


def test_mirrored_conditional_training_equals_single_device_training(mirrored):
    """--conditional under two replicas: each replica takes its rows of the global batch's
    fake labels (drawn from the mirrored noise seed, like the noise) and its images' labels,
    so the run follows one device's."""
    single, replicated = (
        _part(mirrored, "single_conditional"),
        _part(mirrored, "mirrored_conditional"),
    )
    assert len(_weights(single)) > len(_weights(_part(mirrored, "single")))  # embeddings
    assert replicated["replicas_agree"]
    # As for the average above: synchronized BatchNorm sums in another order, which moves
    # values near 0 (biases) by more than their own rounding.
    assert_same_training(replicated, single, atol_fraction=1e-3)
    for name in METRICS:
        np.testing.assert_allclose(
            replicated[f"history:{name}"], single[f"history:{name}"], rtol=1e-5, err_msg=name
        )
    float16 = _part(mirrored, "mirrored_conditional_float16")
    assert float16["replicas_agree"]
    assert all(np.isfinite(float16[f"history:{name}"]).all() for name in METRICS)


def test_mirrored_batch_norm_normalises_with_the_global_batch_statistics(mirrored):
    """mlp-bn's generator under two replicas, each with half of one batch: synchronized
    BatchNorm normalises with the whole batch's statistics, so the images and the moving
    statistics equal one device's on the whole batch, and the replicas' copies agree (with
    each replica's own statistics, they would not: 8 samples' means are not 16's)."""
    single, replicated = _part(mirrored, "single_bn"), _part(mirrored, "mirrored_bn")
    assert replicated["statistics_agree"]
    names = [key for key in single if key.startswith("s") and key != "statistics_agree"]
    assert len(names) == 6  # moving mean and variance of 3 BatchNorm layers
    for key in ["images", *names]:
        np.testing.assert_allclose(replicated[key], single[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("direction", ["mirrored_to_single", "single_to_mirrored"])
def test_checkpoints_load_across_strategies(mirrored, direction):
    """tf.train.Checkpoint of the generator, discriminator, both optimizers and the noise
    seed, written under one strategy and read into a fresh GAN built under the other: every
    variable arrives unchanged (assert_consumed() also held: nothing was left unmatched)."""
    source = _part(mirrored, direction.split("_to_")[0])
    restored = _part(mirrored, direction)
    expected = _weights(source)
    assert restored.keys() >= expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


def test_mirrored_float16_trains_with_finite_losses(mirrored):
    run = _part(mirrored, "mirrored_float16")
    for name in METRICS:
        assert np.isfinite(run[f"history:{name}"]).all(), name
    np.testing.assert_allclose(  # float16 compute, same training up to its precision
        run["history:d_loss"], _part(mirrored, "single")["history:d_loss"], rtol=1e-2
    )


def test_float16_overflow_on_one_replica_skips_the_step_on_all(mirrored):
    """Keras' LossScaleOptimizer looks at the first replica's gradients only; GAN._apply
    spreads an overflow to all replicas (gan.distribute.skip_together), so the step is
    skipped everywhere and the loss scale halves, instead of inf reaching the weights."""
    overflow = _part(mirrored, "overflow")
    np.testing.assert_array_equal(overflow["w"], [1.0, 1.0])
    assert float(overflow["scale"]) == 2.0**15 / 2 and int(overflow["steps"]) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("precision", [None, "float16"], ids=["float32", "float16"])
def test_two_workers_train_identically_and_like_two_mirrored_replicas(
    tmp_path, mirrored, precision
):
    """Two processes on 127.0.0.1 run `python -m gan.train --strategy multiworker` (through
    gan.train.main, keeping the model for this test) as a TF_CONFIG cluster of two workers
    sharing one --logdir. Each worker holds one replica: the pair trains exactly like
    MirroredStrategy over two devices (same dropout masks per replica, same noise rows).
    float16 adds loss scaling, whose skip-or-apply decision all workers must share."""
    images = write_idx(tmp_path / "images-idx3-ubyte", make_images(IMAGES))
    logdir = tmp_path / "logs"
    argv = [
        *("--data", images, "--logdir", logdir, "--run", "two-workers"),
        *("--epochs", EPOCHS, "--batch-size", BATCH, "--noise-dim", NOISE_DIM),
        *("--strategy", "multiworker"),
        *(("--mixed-precision", precision) if precision else ()),
    ]
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    outs, workers = [], []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        outs.append(tmp_path / f"worker{index}")
        outs[-1].mkdir()
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        workers.append(_python(SCRIPT, "worker", outs[-1], *argv, env=env))
    finished = _finish(workers)
    for status, stdout, stderr in finished:
        assert status == 0, stderr[-3000:]
        assert [line.split()[0] for line in stdout.splitlines() if line.startswith("Epoch:")] == [
            "Epoch:1",
            "Epoch:2",
        ]
    assert "the chief worker does" in finished[1][1]

    chief, other = (_load(out / "results.npz") for out in outs)
    assert int(chief["status"]) == int(other["status"]) == 0
    assert chief.keys() == other.keys()
    for key in chief:  # all-reduced updates: bitwise identical on both workers
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    replicas = _part(mirrored, f"train-{precision}")
    assert_same_training(chief, replicas)
    for name in METRICS:  # global metrics: the mean over both workers' halves of each batch
        np.testing.assert_allclose(
            chief[f"history:{name}"], replicas[f"history:{name}"], rtol=1e-5, err_msg=name
        )

    # Only the chief wrote to the shared log directory.
    assert [p.name for p in logdir.iterdir()] == ["two-workers"]
    run_dir = logdir / "two-workers"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["strategy"], config["mixed_precision"]) == ("multiworker", precision)
    assert (run_dir / "generator.keras").is_file() and (run_dir / "history.csv").is_file()


# --- mixed precision (in this process: no devices to split) ----------------------------------


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_computes_low_keeps_float32_and_trains(precision):
    images = make_images(IMAGES)
    config = Config(
        batch_size=BATCH, noise_dim=NOISE_DIM, mixed_precision=precision, steps_per_call=2
    )
    keras.utils.set_random_seed(0)
    model = build_gan(config.resolved(IMAGES, has_gpu=False))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building

    networks = model.generator.layers + model.discriminator.layers
    assert {w.dtype for net in (model.generator, model.discriminator) for w in net.weights} == {
        "float32"
    }
    dense = [layer for layer in networks if isinstance(layer, keras.layers.Dense)]
    assert [layer.compute_dtype for layer in dense] == [precision] * 4 + ["float32"]
    assert model.generator.layers[-1].compute_dtype == "float32"  # images leave as float32
    wants_loss_scaling = precision == "float16"
    for optimizer in (model.d_optimizer, model.g_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) is wants_loss_scaling

    noise = np.random.default_rng(0).standard_normal((BATCH, NOISE_DIM)).astype("float32")
    fakes = model.generator(noise, training=True)
    hidden = model.generator.layers[0](noise)
    assert (fakes.dtype, hidden.dtype) == ("float32", precision)
    real = data.to_float(images[:BATCH])
    d_loss, real_logits, fake_logits = model.train_discriminator(real, fakes)
    assert real_logits.dtype == fake_logits.dtype == d_loss.dtype == "float32"

    before = [w.numpy() for w in model.generator.weights + model.discriminator.weights]
    _fit_two_epochs_with_finite_losses(model, data.make_dataset(images, BATCH, seed=0, epochs=2))
    after = [w.numpy() for w in model.generator.weights + model.discriminator.weights]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))


def _fit_two_epochs_with_finite_losses(model, dataset):
    history = model.fit(
        dataset, epochs=2, steps_per_epoch=IMAGES // BATCH, shuffle=False, verbose=0
    ).history
    assert all(np.isfinite(history[name]).all() for name in METRICS)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_conditional_networks_compute_low_and_keep_float32_images_and_logits(precision):
    config = Config(
        batch_size=BATCH, noise_dim=NOISE_DIM, mixed_precision=precision, conditional=True
    )
    keras.utils.set_random_seed(0)
    model = build_gan(config.resolved(IMAGES, has_gpu=False, class_count=10))
    projection = model.discriminator.get_layer(PROJECTION)
    embedding = model.generator.get_layer(GENERATOR_EMBEDDING)
    assert projection.compute_dtype == embedding.compute_dtype == precision
    assert projection.kernel.dtype == embedding.kernel.dtype == "float32"
    noise = np.random.default_rng(0).standard_normal((BATCH, NOISE_DIM)).astype("float32")
    labels = np.arange(BATCH) % 10
    fakes = model.generator(with_labels(noise, labels), training=True)
    logits = model.discriminator(with_labels(fakes, labels), training=True)
    assert (fakes.dtype, logits.dtype) == ("float32", "float32")
    image_labels = np.arange(IMAGES) % 10
    dataset = data.make_dataset(make_images(IMAGES), BATCH, 0, 2, labels=image_labels)
    _fit_two_epochs_with_finite_losses(model, dataset)


def test_without_mixed_precision_everything_is_float32():
    model = build_gan(Config(batch_size=BATCH, noise_dim=NOISE_DIM).resolved(IMAGES, False))
    layers = model.generator.layers + model.discriminator.layers
    assert {layer.compute_dtype for layer in layers} == {"float32"}
    assert type(model.d_optimizer) is FusedAdam  # no loss scaling


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy, precision", [("mirrored", "bfloat16"), ("multiworker", "float16")]
)
def test_cli_trains_under_a_strategy_on_a_cpu_only_machine(tmp_path, data_dir, strategy, precision):
    """One CPU, no TF_CONFIG: a single replica (multiworker: a one-worker cluster)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    args = ["-m", "gan.train", "--data", data_dir, "--logdir", tmp_path, "--run", "r"]
    args += ["--limit", 64, "--batch-size", 16, "--epochs", 2, "--noise-dim", 8]
    args += ["--strategy", strategy, "--mixed-precision", precision]
    [(status, stdout, stderr)] = _finish([_python(*args, env=env)])
    assert status == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "Epoch:2 " in stdout
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["strategy"], config["mixed_precision"]) == (strategy, precision)
    generator = keras.models.load_model(tmp_path / "r" / "generator.keras")
    images = np.asarray(generator(np.zeros((2, 8), np.float32)))
    assert images.dtype == np.float32 and np.isfinite(images).all()


def test_help_explains_the_scaling_flags():
    [(status, stdout, _)] = _finish([_python("-m", "gan.train", "--help")])
    assert status == 0
    for text in ("--strategy {default,mirrored,multiworker}", "--mixed-precision", "TF_CONFIG"):
        assert text in stdout


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"strategy": "tpu"}, "--strategy must be one of default, mirrored, multiworker"),
        ({"mixed_precision": "int8"}, "--mixed-precision must be one of float16, bfloat16"),
    ],
)
def test_bad_scaling_options_are_config_errors(changes, message):
    with pytest.raises(UsageError, match=message):
        Config(**changes)


def test_a_batch_must_split_evenly_over_the_replicas():
    distribute.check_batch_split(128, 4)
    with pytest.raises(UsageError, match="--batch-size 130 does not split evenly over 4"):
        distribute.check_batch_split(130, 4)


def _tf_config(cluster, task_type, index):
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    }


@pytest.mark.parametrize(
    "strategy, environ, chief",
    [
        ("default", _tf_config({"worker": ["a:1", "b:1"]}, "worker", 1), True),  # not used
        ("multiworker", {}, True),  # no TF_CONFIG: a cluster of one
        ("multiworker", _tf_config({"worker": ["a:1", "b:1"]}, "worker", 0), True),
        ("multiworker", _tf_config({"worker": ["a:1", "b:1"]}, "worker", 1), False),
        ("multiworker", _tf_config({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0), True),
        ("multiworker", _tf_config({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0), False),
    ],
)
def test_the_chief_is_the_chief_task_else_worker_0(strategy, environ, chief):
    assert distribute.is_chief(strategy, environ) is chief


@pytest.mark.parametrize("tf_config", ["{not json", '{"cluster": {}}', '{"task": 3, "cluster": 1}'])
def test_a_malformed_tf_config_is_a_config_error(tf_config):
    with pytest.raises(UsageError, match="TF_CONFIG must be JSON with 'cluster' and 'task'"):
        distribute.is_chief("multiworker", {"TF_CONFIG": tf_config})


def test_only_the_chief_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "logs" / "run"
    with distribute.output_dir(run_dir, chief=True) as output:
        assert output == run_dir
    with distribute.output_dir(run_dir, chief=False) as output:
        assert output.name == "run" and tmp_path not in output.parents
        output.mkdir()
        (output / "config.json").write_text("{}")
    assert not output.parent.exists()  # the scratch directory is gone
    assert not (tmp_path / "logs").exists()
