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
import shlex
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
from distributed_runs import BATCH, CLASSES, EPOCHS, IMAGES, METRICS, NOISE_DIM, TWO_WORKER_CASES
from test_resume import _checkpoint_values, _history, _latest, _steps, _summaries

from gan import data, distribute
from gan.augment import diff_augment
from gan.config import Config
from gan.errors import UsageError
from gan.gan import ReplicaSeedGenerator, build_gan
from gan.models import GENERATOR_EMBEDDING, PROJECTION, with_labels
from gan.optimizers import FusedAdam

SCRIPT = PROJECT_ROOT / "tests" / "distributed_runs.py"
HOOK = "GAN_TEST_SIGNAL"  # gan.safety's test hook: a process signals itself at an exact point
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


def test_mirrored_replicas_draw_their_own_dropout_masks(mirrored):
    """gan.gan.ReplicaSeedGenerator folds each replica's id into the dropout seed: the two
    replicas keep different units (independent masks of rate 0.3 agree on about 58% of them;
    without the fold they would agree on all)."""
    masks = mirrored["dropout_masks"]
    assert masks.shape == (2, 8, 256)
    assert 0.6 < masks.mean() < 0.8  # 70% kept
    assert (masks[0] == masks[1]).mean() < 0.7


def test_mirrored_replicas_augment_their_images_their_own_way(mirrored):
    """--augment draws from a ReplicaSeedGenerator too: given the same images, the two
    replicas shift and cut them differently (with one seed they would be equal)."""
    augmented = mirrored["augmented"]
    assert augmented.shape == (2, 8, 28, 28, 1)
    assert not np.array_equal(augmented[0], augmented[1])


def test_one_device_augments_as_a_plain_seed_generator_draws():
    """With one replica, --augment's transformations are those of keras' own SeedGenerator of
    the same seed: a single-device run with --augment trains as before."""
    config = Config(batch_size=BATCH, noise_dim=NOISE_DIM, augment="translation,cutout", seed=3)
    config = config.resolved(IMAGES, has_gpu=False)
    model = build_gan(config)
    assert type(model.augment_seed) is ReplicaSeedGenerator
    plain = keras.random.SeedGenerator(config.seed + 1)
    images = data.to_float(make_images(BATCH))
    for _ in range(3):  # the seed state advances alike
        np.testing.assert_array_equal(
            model._augment(images), diff_augment(images, model.augmentations, plain)
        )


def test_one_device_draws_the_dropout_masks_of_a_plain_keras_dropout(monkeypatch):
    """With one replica the folded seed is Keras' own: a single-device run trains as before."""
    config = Config(batch_size=BATCH, noise_dim=NOISE_DIM).resolved(IMAGES, has_gpu=False)
    keras.utils.set_random_seed(0)
    folded = build_gan(config).discriminator
    monkeypatch.setattr("gan.gan.fold_replica_into_dropout", lambda network: None)
    keras.utils.set_random_seed(0)
    plain = build_gan(config).discriminator
    for network, kind in ((folded, ReplicaSeedGenerator), (plain, keras.random.SeedGenerator)):
        dropouts = [layer for layer in network.layers if isinstance(layer, keras.layers.Dropout)]
        assert dropouts and all(type(layer.seed_generator) is kind for layer in dropouts)
    batch = data.to_float(make_images(BATCH))
    for _ in range(3):  # the seed state advances alike
        np.testing.assert_array_equal(folded(batch, training=True), plain(batch, training=True))


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


def _start_workers(commands: list[list], envs: list[dict] | None = None) -> list:
    """A TF_CONFIG cluster of len(commands) workers on free ports of 127.0.0.1: worker i runs
    `python COMMANDS[i]` with ENVS[i] added to the environment (GAN_TEST_SIGNAL unset unless
    given there)."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in commands]}
    base = {k: v for k, v in os.environ.items() if k != HOOK}
    workers = []
    for index, (command, env) in enumerate(
        zip(commands, envs or [{}] * len(commands), strict=True)
    ):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(_python(*command, env={**base, "TF_CONFIG": json.dumps(tf_config), **env}))
    return workers


def test_a_worker_whose_peer_never_joins_stops_in_one_line_after_join_timeout(tmp_path, data_dir):
    """A worker of two started alone (its peer stopped before joining, e.g. on a bad option)
    does not wait for ever: after --join-timeout it is stopped with one line, nothing
    written. (Killed: TensorFlow holds the process while it waits for the cluster.)"""
    args = ["-m", "gan.train", "--data", data_dir, "--logdir", tmp_path, "--run", "r"]
    args += ["--strategy", "multiworker", "--join-timeout", 1]
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    env = {**os.environ, **_tf_config(cluster, "worker", 1)}  # the chief never comes
    [(status, _, stderr)] = _finish([_python(*args, env=env)], timeout=120)
    assert status == -signal.SIGKILL, stderr[-3000:]
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(
        "python -m gan.train: error: the cluster of TF_CONFIG did not form within 1 s"
    ), stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", TWO_WORKER_CASES)
def test_two_workers_train_identically_and_like_two_mirrored_replicas(tmp_path, mirrored, case):
    """Two processes on 127.0.0.1 run `python -m gan.train --strategy multiworker` (through
    gan.train.main, keeping the model for this test) as a TF_CONFIG cluster of two workers
    sharing one --logdir. Each worker holds one replica: the pair trains exactly like
    MirroredStrategy over two devices (replica i draws the dropout masks and noise rows of
    replica i there).
    float16 adds loss scaling, whose skip-or-apply decision all workers must share;
    conditional, the labels: each worker takes its rows of the batch's real and fake labels."""
    options = TWO_WORKER_CASES[case]
    precision = options.get("mixed_precision")
    images = write_idx(tmp_path / "images-idx3-ubyte", make_images(IMAGES))
    if options.get("conditional"):  # image i is labelled i mod CLASSES, as in the mirrored run
        labels = (np.arange(IMAGES) % CLASSES).astype(np.uint8)
        write_idx(tmp_path / "labels-idx1-ubyte", labels)
    logdir = tmp_path / "logs"
    argv = [
        *("--data", images, "--logdir", logdir, "--run", "two-workers"),
        *("--epochs", EPOCHS, "--batch-size", BATCH, "--noise-dim", NOISE_DIM),
        *("--strategy", "multiworker"),
        *(("--mixed-precision", precision) if precision else ()),
        *(("--conditional",) if options.get("conditional") else ()),
    ]
    outs = [tmp_path / f"worker{index}" for index in range(2)]
    for out in outs:
        out.mkdir()
    finished = _finish(_start_workers([[SCRIPT, "worker", out, *argv] for out in outs]))
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
    replicas = _part(mirrored, f"train-{case}")
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


@pytest.mark.slow
def test_killed_workers_resume_bitwise_like_an_uninterrupted_two_worker_run(tmp_path):
    """Two workers on 127.0.0.1 train 4 epochs of 4 steps with --checkpoint-every 1 and
    --deterministic, beside an uninterrupted pair. Killed twice with SIGKILL and restarted
    together with --resume each time, the pair ends bit for bit where the uninterrupted one
    ends:
    1. the non-chief worker killed during epoch 2 (global step 6; ckpt-1 is the chief's
       latest);
    2. the chief killed at the end of epoch 3, after its history row and summaries, before
       ckpt-3;
    3. the last restart, with the chief's newest checkpoint (ckpt-2) damaged: the chief falls
       back to ckpt-1, and the other worker must restore ckpt-1 too, as the chief tells it.
    After each kill the survivor loses its peer in a collective operation and stops with one
    line (TensorFlow aborts collectives once a peer misses its heartbeats or refuses
    connections); _finish would kill it after TIMEOUT. Bitwise, not to float32 rounding:
    with --deterministic both pairs compute the same ops on the same values, each all-reduce
    sums the same two numbers, and a checkpoint restores every value (weights, Adam's
    moments, RNG states) exactly. Last, a resume the chief refuses stops both workers."""
    images = write_idx(tmp_path / "images-idx3-ubyte", make_images(IMAGES))
    logs = tmp_path / "logs"
    flags = ["--epochs", 4, "--batch-size", BATCH, "--noise-dim", NOISE_DIM, "--deterministic"]
    flags += ["--checkpoint-every", 1, "--sample-every", 1, "--strategy", "multiworker"]
    flags += ["--data", images]
    train = ["-m", "gan.train", "--logdir", logs]
    whole_dir, run_dir = logs / "whole", logs / "killed"
    resume = [*train, "--run", "killed", "--resume"]

    def restart(envs=None):
        return _finish(_start_workers([resume, resume], envs))

    # 1. The non-chief worker killed during epoch 2; the uninterrupted pair runs beside it.
    whole = _start_workers([[*train, "--run", "whole", *flags]] * 2)
    killed = _start_workers([[*train, "--run", "killed", *flags]] * 2, [{}, {HOOK: "SIGKILL@6"}])
    (chief, _, chief_err), (status, _, _) = _finish(killed)
    assert status == -signal.SIGKILL
    _assert_lost_worker(chief, chief_err, resume)
    assert all(status == 0 for status, _, _ in _finish(whole))
    assert _latest(run_dir) == "ckpt-1"

    # 2. Resumed, then the chief killed after epoch 3's outputs, before its checkpoint.
    (status, chief_out, _), (other, other_out, other_err) = restart([{HOOK: "SIGKILL@epoch3"}, {}])
    assert status == -signal.SIGKILL
    _assert_lost_worker(other, other_err, resume)
    assert "Resuming" in chief_out and "after epoch 1 of 4" in chief_out
    assert "after epoch 1 of 4" in other_out
    assert _latest(run_dir) == "ckpt-2"
    assert [row["epoch"] for row in _history(run_dir)] == ["1", "2", "3"]  # 3: not committed

    # 3. The newest checkpoint damaged: both workers fall back to the same one.
    data_file = run_dir / "checkpoints" / "ckpt-2.data-00000-of-00001"
    data_file.write_bytes(data_file.read_bytes()[:100])
    (status, chief_out, chief_err), (other, other_out, other_err) = restart()
    assert status == other == 0, chief_err[-3000:] + other_err[-3000:]
    assert "cannot read checkpoint" in chief_err and "falling back to ckpt-1" in chief_err
    assert "after epoch 1 of 4" in chief_out and "after epoch 1 of 4" in other_out

    assert _checkpoint_values(run_dir / "checkpoints" / "ckpt-4") == _checkpoint_values(
        whole_dir / "checkpoints" / "ckpt-4"
    )  # weights, optimizer moments and steps, RNG states: bit for bit
    # The chief's history and TensorBoard hold every epoch once, with the uninterrupted values.
    assert _history(run_dir) == _history(whole_dir)
    assert _summaries(run_dir) == _summaries(whole_dir)
    assert all(steps == [1, 2, 3, 4] for steps in _steps(run_dir).values())
    # Only the chief wrote the shared --logdir (the other worker's history rows and summaries
    # would have shown up twice above).
    assert sorted(p.name for p in logs.iterdir()) == ["killed", "whole"]
    assert not (run_dir / "damaged").exists()

    # A resume the chief refuses (nothing left to train) stops the other worker too, at once.
    (status, _, chief_err), (other, _, other_err) = restart()
    assert (status, other) == (2, 2), chief_err[-3000:] + other_err[-3000:]
    assert _last_line(chief_err).endswith("pass --epochs N with N > 4 to train it longer")
    assert _last_line(other_err).endswith(
        "the chief worker could not resume the run (see its error)"
    )


def _last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    return stderr.strip().splitlines()[-1]


def _assert_lost_worker(status: int, stderr: str, resume: list) -> None:
    """The survivor of a killed peer: status 1 and one line saying how to go on."""
    assert status == 1, stderr[-3000:]
    assert _last_line(stderr).startswith("python -m gan.train: error: another worker stopped")
    assert _last_line(stderr).endswith(
        f"on every worker, resume with: python {shlex.join(map(str, resume))}"
    )


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
    scaling = ("--strategy {default,mirrored,multiworker}", "--mixed-precision", "TF_CONFIG")
    for text in (*scaling, "--join-timeout SECONDS"):
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
