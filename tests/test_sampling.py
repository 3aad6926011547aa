"""gan.sampling: drawing images from a generator (seeds, batches, labels) and loading one from a
run directory, a checkpoint (by epoch, the latest readable one) or a .keras file."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_images
from generators import (
    NOISE_DIM,
    conditional_generator,
    constant_generator,
    make_generator,
    save_checkpoint,
)
from PIL import Image

from gan import data, rundir, sampling
from gan.callbacks import SampleGrids
from gan.config import Config
from gan.errors import UsageError
from gan.train import train


def test_memory_check_refuses_what_cannot_fit_and_passes_the_usual_sizes():
    sampling.check_memory(10000, 128, 604 * 604)
    with pytest.raises(UsageError, match=r"^10000000000000 images need about"):
        sampling.check_memory(10**13, 128)


@pytest.mark.parametrize("value, pixel", [(-1.0, 0), (0.0, 128), (1.0, 255), (3.0, 255)])
def test_images_are_uint8_n_by_28_by_28_scaled_from_tanh_range(value, pixel):
    images = sampling.generate(constant_generator(value), 5)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    assert (images == pixel).all()


def test_same_seed_same_images_and_the_first_k_do_not_depend_on_n():
    generator = make_generator()
    images = sampling.generate(generator, 30, seed=4, batch_size=7)  # 5 batches, last short
    np.testing.assert_array_equal(sampling.generate(generator, 30, seed=4), images)
    np.testing.assert_array_equal(sampling.generate(generator, 12, seed=4), images[:12])
    assert not np.array_equal(sampling.generate(generator, 30, seed=5), images)
    assert images.min() < 100 and images.max() > 150  # an untrained net still spans pixels


def test_checkpoint_by_epoch_and_latest(run_dir):
    trained_more = [make_generator(seed) for seed in (7, 8)]
    for epoch, generator in zip((2, 4), trained_more, strict=True):
        save_checkpoint(run_dir, generator, epoch)
    for choice, expected, epoch in [("2", trained_more[0], 2), ("latest", trained_more[1], 4)]:
        source = sampling.GeneratorSource.resolve(run=run_dir, checkpoint=choice)
        assert source.epoch == epoch and source.checkpoint
        np.testing.assert_array_equal(
            sampling.generate(source.load(), 10), sampling.generate(expected, 10)
        )
    by_path = sampling.GeneratorSource.resolve(
        run=run_dir, checkpoint=str(run_dir / "checkpoints" / "ckpt-2")
    )
    assert by_path.epoch == 2
    final = sampling.GeneratorSource.resolve(run=run_dir)
    assert final.epoch == 5 and not final.checkpoint  # generator.keras: the config's epochs


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"arch": "mlp-bn", "g_hidden": (32, 64)},
        {"arch": "mlp-bn", "ema": 0.5},
        {"arch": "dcgan", "ema": 0.5, "conditional": True},
    ],
    ids=["mlp", "mlp-bn-widths", "mlp-bn-ema", "dcgan-ema-conditional"],
)
def test_checkpoints_of_a_real_training_run(tmp_path, options):
    """The checkpoint's generator is built from the run's config (--arch, --g-hidden,
    --conditional) and restored with its BatchNorm moving statistics, which sampling
    (inference mode) uses; with --ema, generator.keras and the checkpoints' samples are the
    generator's average."""
    images = make_images(64)
    config = Config(epochs=2, batch_size=32, noise_dim=NOISE_DIM, jit=False, **options)
    train(config, tmp_path / "run", images, labels=np.arange(64) % 10)
    final = sampling.GeneratorSource.resolve(run=tmp_path / "run")
    last = sampling.GeneratorSource.resolve(run=tmp_path / "run", checkpoint="latest")
    assert last.epoch == 2 and last.path.name == "ckpt-2"
    expected = sampling.generate(final.load(), 20)
    np.testing.assert_array_equal(sampling.generate(last.load(), 20), expected)
    before_training = sampling.GeneratorSource.resolve(run=tmp_path / "run", checkpoint="0")
    assert not np.array_equal(sampling.generate(before_training.load(), 20), expected)
    raw = tmp_path / "run" / "generator_raw.keras"
    assert raw.exists() == ("ema" in options)
    if raw.exists():  # the average is not the trained generator
        trained = sampling.GeneratorSource.resolve(generator=raw).load()
        assert not np.array_equal(sampling.generate(trained, 20), expected)
        # the last sample grid is the average's too
        last_grid = tmp_path / "run" / "samples" / rundir.sample_grid_name(2)
        saved = Config.from_json((tmp_path / "run" / "config.json").read_text())  # resolved
        grids = SampleGrids.for_run(saved, tmp_path, None, every=1, epochs=1)
        assert np.array_equal(np.asarray(Image.open(last_grid)), grids.draw(final.load()))
        assert not np.array_equal(np.asarray(Image.open(last_grid)), grids.draw(trained))


def test_checkpoint_errors_name_what_exists(run_dir):
    with pytest.raises(UsageError, match="no checkpoints in"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="latest")
    save_checkpoint(run_dir, make_generator(), 2)
    with pytest.raises(UsageError, match=r"no checkpoint .*ckpt-9 \(saved: ckpt-2\)"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="9")
    # A checkpoint without a `generator`, or of other networks, is refused, not half-loaded.
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=make_generator()), run_dir / "checkpoints", max_to_keep=None
    ).save(checkpoint_number=6)
    with pytest.raises(UsageError, match="holds no `generator`"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="6").load()
    config = Config.from_json((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(config.replace(noise_dim=8).to_json())
    with pytest.raises(
        UsageError, match="cannot restore the generator of --arch mlp --noise-dim 8"
    ):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="2").load()


def test_latest_skips_a_damaged_checkpoint_with_a_warning(run_dir, capsys):
    save_checkpoint(run_dir, make_generator(seed=2), 2)
    save_checkpoint(run_dir, make_generator(seed=3), 3)
    (data_file,) = (run_dir / "checkpoints").glob("ckpt-3.data-*")
    data_file.write_bytes(data_file.read_bytes()[:-100])
    source = sampling.GeneratorSource.resolve(run=run_dir, checkpoint="latest")
    assert source.path.name == "ckpt-2" and source.epoch == 2
    warning = capsys.readouterr().err
    assert warning.startswith("warning: cannot read checkpoint ckpt-3 (")
    assert warning.endswith("falling back to ckpt-2\n")
    for prefix in (run_dir / "checkpoints").glob("ckpt-2.*"):
        prefix.unlink()
    with pytest.raises(UsageError, match=r"latest: no checkpoint in .* can be read: ckpt-3 \("):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="latest")


def test_corrupt_checkpoint_and_config_are_clear_errors(run_dir):
    save_checkpoint(run_dir, make_generator(), 2)
    data_file = next((run_dir / "checkpoints").glob("ckpt-2.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(UsageError, match=r"ckpt-2: cannot restore the generator .* \(Read less"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="2").load()
    (run_dir / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot use .*config.json: "):
        sampling.GeneratorSource.resolve(run=run_dir)


def test_a_run_without_generator_keras_points_to_checkpoints(run_dir):
    (run_dir / "generator.keras").unlink()
    with pytest.raises(UsageError, match="--checkpoint latest"):
        sampling.GeneratorSource.resolve(run=run_dir)


def test_label_sequences_repeat_the_classes_given_and_default_to_every_class_in_turn():
    np.testing.assert_array_equal(sampling.label_sequence(None, 23, 10), np.arange(23) % 10)
    np.testing.assert_array_equal(sampling.label_sequence(7, 4, 10), [7, 7, 7, 7])
    np.testing.assert_array_equal(sampling.label_sequence((1, 3, 5), 7, 10), [1, 3, 5, 1, 3, 5, 1])
    assert sampling.label_sequence(None, 5, 3).dtype == np.uint8
    with pytest.raises(UsageError, match=r"class 10, 12 is not one of the generator's 10 classes"):
        sampling.label_sequence((1, 10, 12), 5, 10)


def test_a_conditional_generator_draws_the_classes_asked_for():
    generator = conditional_generator()
    noise = np.random.default_rng(3).standard_normal((20, NOISE_DIM), dtype=np.float32)
    sevens = sampling.generate(generator, 20, seed=3, batch_size=7, labels=7)
    expected = generator([noise, np.full(20, 7, np.int32)], training=False)
    np.testing.assert_array_equal(sevens, data.to_uint8(expected))
    images, labels = sampling.generate_with_labels(generator, 20, seed=3)
    np.testing.assert_array_equal(labels, np.arange(20) % 10)  # every class in turn
    np.testing.assert_array_equal(images[7::10], sevens[7::10])  # same noise, class 7
    assert not np.array_equal(images[6], sevens[6])  # same noise, class 6 instead of 7
    np.testing.assert_array_equal(sampling.generate(generator, 12, seed=3), images[:12])
    assert sampling.generate_with_labels(make_generator(), 3)[1] is None
    with pytest.raises(UsageError, match="the generator is not conditional"):
        sampling.generate(make_generator(), 3, labels=2)


def test_truncated_noise_stays_within_its_bound_and_keeps_the_seeds_promises():
    plain = np.random.default_rng(3).standard_normal((50, 8), dtype=np.float32)
    np.testing.assert_array_equal(sampling.draw_noise(50, 8, seed=3), plain)  # as it always was
    noise = sampling.draw_noise(2000, 8, seed=3, truncation=1.0)
    assert noise.dtype == np.float32 and np.abs(noise).max() <= 1.0
    np.testing.assert_array_equal(sampling.draw_noise(10, 8, seed=3, truncation=1.0), noise[:10])
    assert not np.array_equal(sampling.draw_noise(10, 8, seed=4, truncation=1.0), noise[:10])
    # N(0, 1) truncated to [-1, 1]: mean 0, variance 1 - 2 phi(1) / (2 Phi(1) - 1) = 0.2911
    assert abs(noise.mean()) < 0.02 and abs(noise.var() - 0.2911) < 0.01
    wide = sampling.draw_noise(2000, 8, seed=3, truncation=40.0)  # as good as untruncated
    assert abs(wide.var() - 1.0) < 0.05
    with pytest.raises(UsageError, match="truncation must be > 0"):
        sampling.draw_noise(1, 8, seed=0, truncation=0.0)


def test_generate_with_truncation_feeds_the_truncated_noise():
    generator = make_generator()
    images = sampling.generate(generator, 6, seed=2, batch_size=4, truncation=0.5)
    noise = sampling.draw_noise(6, NOISE_DIM, seed=2, truncation=0.5)
    np.testing.assert_array_equal(images, data.to_uint8(generator(noise, training=False)))
    assert not np.array_equal(images, sampling.generate(generator, 6, seed=2))
