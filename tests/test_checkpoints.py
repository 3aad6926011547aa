"""Checkpoints hold the whole training state, refuse what does not fit, and a resumed run's
outputs are rolled back to the checkpoint; the NaN guard, signals and the test hook."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_images

from gan import callbacks, data
from gan.callbacks import SaveCheckpoints, StopOnNonFinite
from gan.checkpoints import CheckpointError, Checkpoints, fingerprint
from gan.config import Config
from gan.errors import UsageError
from gan.gan import build_gan
from gan.safety import NonFiniteLoss, SignalHook, StopRequest, signal_hook_from_env
from gan.train import train

BATCH = 16


def _gan(seed=0, noise_dim=8, **options):
    keras.utils.set_random_seed(seed)
    return build_gan(Config(noise_dim=noise_dim, jit=False, seed=seed, **options))


def _batch(seed=1):
    return tf.constant(data.to_float(make_images(BATCH, seed)))


def _all_variables(model):
    return [*model.variables, *model.d_optimizer.variables, *model.g_optimizer.variables]


def _built(model):
    model.d_optimizer.build(model.discriminator.trainable_variables)
    model.g_optimizer.build(model.generator.trainable_variables)
    return model


def test_tf_checkpoint_of_the_gan_misses_its_random_number_states(tmp_path):
    """Why gan.checkpoints lists the variables itself: a SeedGenerator is not trackable."""
    source, target = _built(_gan(seed=0)), _built(_gan(seed=5))
    path = tf.train.Checkpoint(model=source).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=target).read(path).expect_partial()
    restored = {
        a.path: a.numpy().tobytes() == b.numpy().tobytes()
        for a, b in zip(source.variables, target.variables, strict=True)
    }
    random_states = {path for path in restored if "seed_generator" in path}
    assert len(random_states) == 2  # the noise's and the dropout layer's
    assert {path for path, same in restored.items() if not same} == random_states


@pytest.mark.parametrize("arch", ["mlp", "mlp-bn", "dcgan"])
def test_checkpoint_covers_every_variable_and_a_restored_run_continues_bitwise(tmp_path, arch):
    images_sha = fingerprint(make_images(4))
    trained = _gan(seed=0, arch=arch)
    store = Checkpoints(trained, tmp_path, images_sha)
    checkpointed = {id(v) for group in store.groups.values() for v in group}
    # weights, BatchNorm moving statistics, dropout and noise RNG states, optimizer step
    # counts and moments: all of them
    assert checkpointed == {id(v) for v in _all_variables(trained)}
    assert {id(v) for v in trained.generator.non_trainable_weights} <= checkpointed
    assert (arch == "mlp-bn") != any(
        "seed_generator" in v.path for v in trained.discriminator.variables
    )  # mlp-bn's discriminator has no dropout
    for seed in (1, 2):
        trained.train_step(_batch(seed))
    store.save(7)

    restored = _gan(seed=5, arch=arch)  # other initial weights and RNG states
    assert Checkpoints(restored, tmp_path, images_sha).restore_latest() == 7
    for a, b in zip(_all_variables(trained), _all_variables(restored), strict=True):
        assert a.numpy().tobytes() == b.numpy().tobytes(), a.path
    # Same state, same next step: the noise draw and the dropout masks continue identically.
    trained.train_step(_batch(3))
    restored.train_step(_batch(3))
    for a, b in zip(_all_variables(trained), _all_variables(restored), strict=True):
        assert a.numpy().tobytes() == b.numpy().tobytes(), a.path


def test_restore_refuses_a_mismatched_checkpoint(tmp_path):
    images_sha = fingerprint(make_images(4))
    Checkpoints(_gan(noise_dim=8), tmp_path, images_sha).save(1)
    with pytest.raises(CheckpointError, match=r"generator/.*shape \(8, 256\) in the checkpoint"):
        Checkpoints(_gan(noise_dim=16), tmp_path, images_sha).restore_latest()
    with pytest.raises(CheckpointError, match=r"shape \(512, 784\) in the checkpoint, \(512, 6"):
        Checkpoints(_gan(g_hidden=(256, 512, 64)), tmp_path, images_sha).restore_latest()
    with pytest.raises(CheckpointError, match="does not match the configured networks"):
        Checkpoints(_gan(arch="mlp-bn"), tmp_path, images_sha).restore_latest()
    with pytest.raises(CheckpointError, match="training images differ"):
        Checkpoints(_gan(), tmp_path, fingerprint(make_images(5))).restore_latest()


def _three_checkpoints(directory):
    """ckpt-1, ckpt-2, ckpt-3 of one GAN, as a run saves them; returns the GAN."""
    model = _gan()
    store = Checkpoints(model, directory, fingerprint(make_images(4)))
    for epoch in (1, 2, 3):
        model.train_step(_batch(epoch))
        store.save(epoch)
    return model


def _truncate(directory):
    (data_file,) = directory.glob("ckpt-3.data-*")
    data_file.write_bytes(data_file.read_bytes()[:-100])


def _flip_bytes(directory):
    (data_file,) = directory.glob("ckpt-3.data-*")
    content = bytearray(data_file.read_bytes())
    content[len(content) // 2 : len(content) // 2 + 8] = bytes(b ^ 0xFF for b in content[:8])
    data_file.write_bytes(bytes(content))


DAMAGE = {  # case -> (damage, the epoch resumed from, what the notice says)
    "truncated-data": (_truncate, 2, "cannot read checkpoint ckpt-3 ("),
    "flipped-bytes": (_flip_bytes, 2, "cannot read checkpoint ckpt-3 ("),
    "no-index-file": (lambda d: (d / "checkpoint").unlink(), 3, None),
    "one-index-missing": (lambda d: (d / "ckpt-3.index").unlink(), 2, "ckpt-3.index is missing"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_resume_falls_back_to_the_newest_checkpoint_that_reads(tmp_path, case):
    damage, epoch, notice = DAMAGE[case]
    directory = tmp_path / "checkpoints"
    _three_checkpoints(directory)
    expected = _checkpoint_values(directory / f"ckpt-{epoch}")
    damage(directory)
    (directory / "ckpt-4_temp").mkdir()  # as a kill or a full disk leaves it
    (directory / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")

    model = _gan(seed=5)
    store = Checkpoints(model, directory, fingerprint(make_images(4)))
    assert store.restore_latest() == epoch
    assert (store.skipped == []) if notice is None else (notice in store.skipped[0])
    assert all(f"falling back to ckpt-{epoch}" in line for line in store.skipped)
    assert _values(store) == expected  # the whole state, from the checkpoint chosen

    store.make_latest(epoch)
    assert not list(directory.glob("ckpt-4_temp*"))
    assert not list(directory.glob("ckpt-3.*")) or epoch == 3
    assert tf.train.latest_checkpoint(directory).endswith(f"ckpt-{epoch}")
    for later in range(epoch + 1, epoch + 4):  # the manager carries on from there
        store.save(later)
    state = tf.train.get_checkpoint_state(str(directory))
    kept = [f"ckpt-{later}" for later in range(epoch + 1, epoch + 4)]  # the newest KEEP
    assert [p.rsplit("/", 1)[-1] for p in state.all_model_checkpoint_paths] == kept
    assert sorted(p.name for p in directory.glob("*.index")) == [f"{name}.index" for name in kept]


def test_no_readable_checkpoint_is_refused_naming_each_and_why(tmp_path):
    directory = tmp_path / "checkpoints"
    _three_checkpoints(directory)
    for data_file in directory.glob("ckpt-*.data-*"):
        data_file.write_bytes(data_file.read_bytes()[:50])
    (directory / "ckpt-1.index").unlink()
    with pytest.raises(CheckpointError) as raised:
        Checkpoints(_gan(), directory, fingerprint(make_images(4))).restore_latest()
    message = str(raised.value)
    assert message.startswith(f"--resume: no checkpoint in {directory} can be read: ckpt-3 (")
    assert "; ckpt-2 (" in message and "; ckpt-1 (ckpt-1.index is missing)" in message
    assert "\n" not in message


def test_a_directory_without_checkpoints_restores_epoch_0(tmp_path):
    assert Checkpoints(_gan(), tmp_path / "checkpoints", "").restore_latest() == 0


def _checkpoint_values(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {
        name: np.asarray(reader.get_tensor(name)).tobytes()
        for name in reader.get_variable_to_shape_map()
        if name.endswith("VARIABLE_VALUE") and not name.startswith("save_counter")
    }


def _values(store) -> dict:
    """The state `store` checkpoints, keyed as in the checkpoint file."""
    values = {
        f"{name}/{index}/.ATTRIBUTES/VARIABLE_VALUE": v.numpy().tobytes()
        for name, variables in store.groups.items()
        for index, v in enumerate(variables)
    }
    values["epoch/.ATTRIBUTES/VARIABLE_VALUE"] = store.epoch.numpy().tobytes()
    values["images_sha256/.ATTRIBUTES/VARIABLE_VALUE"] = store._saved_sha256.numpy()
    return values


def test_nonfinite_variables_are_found(tmp_path):
    model = _gan()
    store = Checkpoints(model, tmp_path, "")
    assert store.nonfinite_variables() == []
    kernel = model.generator.layers[0].kernel
    kernel.assign(np.where(np.eye(*kernel.shape, dtype=bool), np.inf, kernel.numpy()))
    assert store.nonfinite_variables() == [kernel.path]


HPARAMS_TAGS = "_hparams_/"  # the run's options, logged once per start at step 0, not per epoch


def _steps(events):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [
        (value.tag, event.step)
        for event in EventFileLoader(str(events)).Load()
        for value in event.summary.value
        if not value.tag.startswith(HPARAMS_TAGS)
    ]


def _poison(make_dataset, epoch, step):
    """A gan.data.make_dataset (of unlabelled batches) whose batch at (epoch, step), both
    from 1, is all NaN."""

    def poisoned(images, batch_size, seed, epochs, first_epoch=0, labels=None):
        assert labels is None
        index = (epoch - 1 - first_epoch) * (len(images) // batch_size) + step - 1
        batches = make_dataset(images, batch_size, seed, epochs, first_epoch).enumerate()
        return batches.map(lambda i, batch: tf.where(i == index, np.float32(np.nan), batch))

    return poisoned


def test_poisoned_batch_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path, images, monkeypatch
):
    monkeypatch.setattr(data, "make_dataset", _poison(data.make_dataset, epoch=3, step=5))
    config = Config(epochs=4, batch_size=32, noise_dim=8, jit=False, checkpoint_every=1)
    run_dir = tmp_path / "run"
    # NaN pixels make NaN gradients, hence NaN weights. The losses may stay finite: in a compiled
    # step on CPU the fused MatMul+BiasAdd+Relu kernel maps NaN to 0, so D's output never sees
    # it. Then the weight check at the epoch's end catches it, before the epoch is written.
    # (With several steps per compiled call, a NaN loss is seen at the end of its call.)
    caught = r"(d_loss is nan.* at epoch 3, step [5-9] of 9|generator/.* non-finite during epoch 3)"
    with pytest.raises(NonFiniteLoss, match=f"{caught}: .*ckpt-2"):
        train(config, run_dir, images)
    assert tf.train.latest_checkpoint(run_dir / "checkpoints").endswith("ckpt-2")
    assert not list((run_dir / "checkpoints").glob("ckpt-3*"))
    (events,) = run_dir.glob("*tfevents*")
    assert sorted({step for tag, step in _steps(events)}) == [1, 2]  # nothing of epoch 3
    with open(run_dir / "history.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]


def test_a_nonfinite_loss_is_reported_with_its_epoch_and_step(tmp_path):
    guard = StopOnNonFinite(Checkpoints(_gan(), tmp_path, ""), steps_per_epoch=9)
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(3, {"d_loss": 0.7, "g_loss": 0.6})
    with pytest.raises(NonFiniteLoss, match="g_loss is inf at epoch 3, step 5 of 9"):
        guard.on_train_batch_end(4, {"d_loss": 0.7, "g_loss": float("inf")})


@pytest.mark.parametrize(
    "value, hook",
    [
        ("SIGKILL@37", SignalHook(signal.SIGKILL, step=37)),
        ("SIGINT@epoch2", SignalHook(signal.SIGINT, epoch=2)),
        ("", None),
    ],
)
def test_signal_hook_is_read_from_the_environment(value, hook):
    assert signal_hook_from_env({"GAN_TEST_SIGNAL": value}) == hook


@pytest.mark.parametrize("value", ["KILL@3", "SIGKILL@0", "SIGNOPE@3", "SIGKILL@epoch", "x"])
def test_malformed_signal_hook_is_a_config_error(value):
    with pytest.raises(UsageError, match="GAN_TEST_SIGNAL"):
        signal_hook_from_env({"GAN_TEST_SIGNAL": value})


def test_first_signal_asks_to_stop_second_interrupts_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.parametrize("mixed_precision", [None, "float16"])
def test_checkpoints_use_the_optimizers_as_compiled_without_adding_variables(
    tmp_path, mixed_precision
):
    """GAN.compile builds both optimizers; building a LossScaleOptimizer a second time would
    give it a second, stale set of its own variables."""
    config = Config(noise_dim=8, mixed_precision=mixed_precision)
    model = build_gan(config.resolved(1000, has_gpu=False))
    optimizer_variables = model.d_optimizer.variables + model.g_optimizer.variables
    Checkpoints(model, tmp_path, "")
    assert model.d_optimizer.variables + model.g_optimizer.variables == optimizer_variables
    paths = [v.path for v in optimizer_variables]
    assert len(paths) == len(set(paths))


@pytest.mark.parametrize(
    ("every", "ends", "saved"),
    [
        # by interval (60 s): the first epoch end 60 s or more after the last save; the last
        (None, [10, 59, 61, 100, 121, 130], [3, 5, 6]),
        # every 2 epochs, whatever the time; the last
        (2, [100, 200, 300, 400, 500], [2, 4, 5]),
    ],
)
def test_checkpoints_are_saved_by_interval_or_every_n_epochs_and_after_the_last(
    monkeypatch, every, ends, saved
):
    now = [0.0]  # seconds: the start of training, then each epoch's end
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    store = types.SimpleNamespace(saves=[])
    store.save = store.saves.append
    stop = types.SimpleNamespace(signum=None)
    saver = SaveCheckpoints(store, len(ends), stop, every=every, interval=60.0)
    saver.on_train_begin()
    for epoch, end in enumerate(ends):
        now[0] = end
        saver.on_epoch_end(epoch)
    assert store.saves == saved


def test_a_stop_request_saves_the_epoch_and_stops():
    store = types.SimpleNamespace(saves=[])
    store.save = store.saves.append
    stop = types.SimpleNamespace(signum=signal.SIGTERM)
    saver = SaveCheckpoints(store, 10, stop, interval=60.0)
    saver.set_model(types.SimpleNamespace(stop_training=False))
    saver.on_train_begin()
    saver.on_epoch_end(2)
    assert store.saves == [3] and saver.model.stop_training


def test_a_conditional_run_fingerprints_its_labels_and_an_unconditional_one_as_before():
    images = make_images(4)
    by_hand = hashlib.sha256(repr(images.shape).encode())
    by_hand.update(images.tobytes())
    assert fingerprint(images) == fingerprint(images, None) == by_hand.hexdigest()  # unchanged
    labelled = fingerprint(images, np.array([0, 1, 2, 3]))
    assert labelled not in (fingerprint(images), fingerprint(images, np.array([0, 1, 2, 4])))
