"""Checkpoints hold the whole training state, refuse what does not fit, and a resumed run's
outputs are rolled back to the checkpoint."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_gan, make_images

from gan import data
from gan.checkpoints import CheckpointError, Checkpoints, fingerprint
from gan.config import Config
from gan.gan import build_gan

BATCH = 16


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
    source, target = _built(make_gan(seed=0)), _built(make_gan(seed=5))
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
    trained = make_gan(seed=0, arch=arch)
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

    restored = make_gan(seed=5, arch=arch)  # other initial weights and RNG states
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
    Checkpoints(make_gan(noise_dim=8), tmp_path, images_sha).save(1)
    with pytest.raises(CheckpointError, match=r"generator/.*shape \(8, 256\) in the checkpoint"):
        Checkpoints(make_gan(noise_dim=16), tmp_path, images_sha).restore_latest()
    with pytest.raises(CheckpointError, match=r"shape \(512, 784\) in the checkpoint, \(512, 6"):
        Checkpoints(make_gan(g_hidden=(256, 512, 64)), tmp_path, images_sha).restore_latest()
    with pytest.raises(CheckpointError, match="does not match the configured networks"):
        Checkpoints(make_gan(arch="mlp-bn"), tmp_path, images_sha).restore_latest()
    with pytest.raises(CheckpointError, match="training images differ"):
        Checkpoints(make_gan(), tmp_path, fingerprint(make_images(5))).restore_latest()


def _three_checkpoints(directory):
    """ckpt-1, ckpt-2, ckpt-3 of one GAN, as a run saves them; returns the GAN."""
    model = make_gan()
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

    model = make_gan(seed=5)
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
        Checkpoints(make_gan(), directory, fingerprint(make_images(4))).restore_latest()
    message = str(raised.value)
    assert message.startswith(f"--resume: no checkpoint in {directory} can be read: ckpt-3 (")
    assert "; ckpt-2 (" in message and "; ckpt-1 (ckpt-1.index is missing)" in message
    assert "\n" not in message


def test_a_directory_without_checkpoints_restores_epoch_0(tmp_path):
    assert Checkpoints(make_gan(), tmp_path / "checkpoints", "").restore_latest() == 0


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
    model = make_gan()
    store = Checkpoints(model, tmp_path, "")
    assert store.nonfinite_variables() == []
    kernel = model.generator.layers[0].kernel
    kernel.assign(np.where(np.eye(*kernel.shape, dtype=bool), np.inf, kernel.numpy()))
    assert store.nonfinite_variables() == [kernel.path]


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


def test_a_conditional_run_fingerprints_its_labels_and_an_unconditional_one_as_before():
    images = make_images(4)
    by_hand = hashlib.sha256(repr(images.shape).encode())
    by_hand.update(images.tobytes())
    assert fingerprint(images) == fingerprint(images, None) == by_hand.hexdigest()  # unchanged
    labelled = fingerprint(images, np.array([0, 1, 2, 3]))
    assert labelled not in (fingerprint(images), fingerprint(images, np.array([0, 1, 2, 4])))
