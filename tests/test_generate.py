"""`gan.generate`: the sampling function, loading generators and checkpoints, and the CLI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import PROJECT_ROOT, assert_usage_error, make_images, run_module
from PIL import Image

from gan import data, generate, sampling
from gan.checkpoints import Checkpoints, fingerprint
from gan.config import Config
from gan.errors import UsageError
from gan.gan import build_gan
from gan.models import GENERATOR_EMBEDDING, build_generator, generator_for
from gan.train import train

NOISE_DIM = 16


def run_cli(*args, cwd=PROJECT_ROOT):
    return run_module("gan.generate", *args, cwd=cwd)


def _generator(seed=1):
    keras.utils.set_random_seed(seed)
    return build_generator("mlp", NOISE_DIM)


@pytest.fixture
def run_dir(tmp_path):
    """A finished run as gan.train leaves it: config.json and generator.keras."""
    directory = tmp_path / "logs" / "r"
    directory.mkdir(parents=True)
    config = Config(epochs=5, noise_dim=NOISE_DIM, run="r")
    (directory / "config.json").write_text(config.to_json())
    _generator().save(directory / "generator.keras")
    return directory


def _save_checkpoint(run_dir, generator, epoch):
    """What training writes (gan.checkpoints): the whole training state after `epoch` epochs,
    here of a GAN whose generator has `generator`'s weights."""
    model = build_gan(Config(noise_dim=NOISE_DIM, jit=False))
    model.generator.set_weights(generator.get_weights())
    saver = Checkpoints(
        model, run_dir / "checkpoints", fingerprint(np.zeros((1, 28, 28), np.uint8))
    )
    saver.save(epoch)


def _constant_generator(value):
    """noise (B, 4) -> every pixel `value`."""
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(784, kernel_initializer="zeros", bias_initializer="zeros"),
            keras.layers.Lambda(lambda x: x * 0 + value),
            keras.layers.Reshape((28, 28, 1)),
        ]
    )


def test_memory_check_refuses_what_cannot_fit_and_passes_the_usual_sizes():
    sampling.check_memory(10000, 128, 604 * 604)
    with pytest.raises(UsageError, match=r"^10000000000000 images need about"):
        sampling.check_memory(10**13, 128)


@pytest.mark.parametrize("value, pixel", [(-1.0, 0), (0.0, 128), (1.0, 255), (3.0, 255)])
def test_images_are_uint8_n_by_28_by_28_scaled_from_tanh_range(value, pixel):
    images = sampling.generate(_constant_generator(value), 5)
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    assert (images == pixel).all()


def test_same_seed_same_images_and_the_first_k_do_not_depend_on_n():
    generator = _generator()
    images = sampling.generate(generator, 30, seed=4, batch_size=7)  # 5 batches, last short
    np.testing.assert_array_equal(sampling.generate(generator, 30, seed=4), images)
    np.testing.assert_array_equal(sampling.generate(generator, 12, seed=4), images[:12])
    assert not np.array_equal(sampling.generate(generator, 30, seed=5), images)
    assert images.min() < 100 and images.max() > 150  # an untrained net still spans pixels


def test_npz_from_the_cli_is_what_generate_returns(tmp_path, run_dir):
    result = run_cli("--run", run_dir, "--n", 40, "--seed", 2, "--out", tmp_path / "s.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s.npz") as archive:
        assert archive.files == ["images"]
        images = archive["images"]
    assert images.dtype == np.uint8 and images.shape == (40, 28, 28)
    np.testing.assert_array_equal(images, sampling.generate(_generator(), 40, seed=2))


def test_png_grid_from_a_bare_generator_file(tmp_path, run_dir):
    png = tmp_path / "grid.png"
    result = run_cli(
        "--generator", run_dir / "generator.keras", "--png", png, "--rows", 3, "--cols", 4
    )
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(png))
    assert picture.dtype == np.uint8
    assert picture.shape == ((3 * 30 + 2) * 2, (4 * 30 + 2) * 2)  # 28 px + 2 px pad, scale 2
    first = sampling.generate(_generator(), 1)[0]
    np.testing.assert_array_equal(picture[4:60:2, 4:60:2], first)  # top-left cell, unscaled


def test_outputs_are_never_overwritten_without_overwrite(tmp_path, run_dir):
    out = tmp_path / "s.npz"
    out.write_bytes(b"precious")
    result = run_cli("--run", run_dir, "--out", out)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert out.read_bytes() == b"precious"
    assert run_cli("--run", run_dir, "--n", 3, "--out", out, "--overwrite").returncode == 0
    with np.load(out) as archive:
        assert archive["images"].shape == (3, 28, 28)


def test_outputs_without_a_file_go_to_the_run_directory_numbered_and_stderr_stays_quiet(
    run_dir,
):
    for _ in range(2):
        result = run_cli("--run", run_dir, "--n", 3, "--out", "--png")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # TensorFlow's start-up lines are held back
    assert sorted(p.name for p in (run_dir / "generated").iterdir()) == [
        "grid-epoch5-seed0-2.png",
        "grid-epoch5-seed0.png",
        "samples-epoch5-seed0-2.npz",
        "samples-epoch5-seed0.npz",
    ]


def test_checkpoint_by_epoch_and_latest(run_dir):
    trained_more = [_generator(seed) for seed in (7, 8)]
    for epoch, generator in zip((2, 4), trained_more, strict=True):
        _save_checkpoint(run_dir, generator, epoch)
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


def test_checkpoint_cli(tmp_path, run_dir):
    _save_checkpoint(run_dir, _generator(seed=7), 3)
    result = run_cli("--run", run_dir, "--checkpoint", 3, "--n", 6, "--out", tmp_path / "c.npz")
    assert result.returncode == 0, result.stderr
    assert "ckpt-3 (epoch 3)" in result.stdout
    with np.load(tmp_path / "c.npz") as archive:
        np.testing.assert_array_equal(archive["images"], sampling.generate(_generator(seed=7), 6))


def test_checkpoint_errors_name_what_exists(run_dir):
    with pytest.raises(UsageError, match="no checkpoints in"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="latest")
    _save_checkpoint(run_dir, _generator(), 2)
    with pytest.raises(UsageError, match=r"no checkpoint .*ckpt-9 \(saved: ckpt-2\)"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="9")
    # A checkpoint without a `generator`, or of other networks, is refused, not half-loaded.
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=_generator()), run_dir / "checkpoints", max_to_keep=None
    ).save(checkpoint_number=6)
    with pytest.raises(UsageError, match="holds no `generator`"):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="6").load()
    config = Config.from_json((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(config.replace(noise_dim=8).to_json())
    with pytest.raises(
        UsageError, match="cannot restore the generator of --arch mlp --noise-dim 8"
    ):
        sampling.GeneratorSource.resolve(run=run_dir, checkpoint="2").load()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give exactly one of --run RUN_DIR and --generator FILE.keras"),
        (["--run", "RUN", "--generator", "RUN/generator.keras"], "give exactly one of"),
        (["--run", "RUN"], "nothing to write: give --out [FILE.npz] and/or --png [FILE.png]"),
        (["--generator", "RUN/generator.keras", "--png"], "--png needs a file name (--png FILE"),
        (["--run", "RUN", "--out", "x.npy"], "--out x.npy: the file name must end in .npz"),
        (["--run", "RUN", "--png", "no/dir/g.png"], "no directory no/dir"),
        (["--run", "nowhere", "--png", "g.png"], "not a run directory"),
        (["--generator", "RUN/discriminator.keras", "--png", "g.png"], "not a generator"),
        (["--generator", "RUN/config.json", "--png", "g.png"], "not a .keras file"),
        (["--generator", "RUN/generator.keras", "--checkpoint", "1"], "--checkpoint needs --run"),
        (["--run", "RUN", "--n", "0", "--out", "s.npz"], "--n: must be >= 1, got 0"),
        (["--run", "RUN", "--seed", "x", "--out", "s.npz"], "expected a whole number"),
        # Sizes beyond any memory are refused up front, with the estimate.
        (["--run", "RUN", "--n", "10000000000", "--out", "s.npz"], "10000000000 images need "),
        (["--run", "RUN", "--rows", "100000", "--cols", "100000", "--png", "g.png"], "GiB of m"),
        (["--generator", "RUN/truncated.keras", "--png", "g.png"], "not a complete .keras file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, run_dir, args, message):
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]).save(
        run_dir / "discriminator.keras"
    )
    whole = (run_dir / "generator.keras").read_bytes()
    (run_dir / "truncated.keras").write_bytes(whole[: len(whole) // 2])
    args = [a.replace("RUN", str(run_dir)) for a in args]
    result = run_cli(*args, cwd=tmp_path)
    assert_usage_error(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]  # nothing written


def test_latest_skips_a_damaged_checkpoint_with_a_warning(run_dir, capsys):
    _save_checkpoint(run_dir, _generator(seed=2), 2)
    _save_checkpoint(run_dir, _generator(seed=3), 3)
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
    _save_checkpoint(run_dir, _generator(), 2)
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


# --- conditional runs: --label -------------------------------------------------------------

CLASSES = 10


def _conditional_generator(seed=1):
    keras.utils.set_random_seed(seed)
    config = Config(conditional=True, noise_dim=NOISE_DIM).resolved(1000, False, CLASSES)
    generator = generator_for(config)
    # A label embedding that matters as much as the noise (it starts near 0).
    embedding = generator.get_layer(GENERATOR_EMBEDDING)
    embedding.kernel.assign(np.random.default_rng(seed).standard_normal((CLASSES, 50)))
    return generator


@pytest.fixture
def conditional_run_dir(tmp_path):
    """A finished conditional run as gan.train leaves it: config.json and generator.keras."""
    directory = tmp_path / "logs" / "c"
    directory.mkdir(parents=True)
    config = Config(epochs=5, noise_dim=NOISE_DIM, run="c", conditional=True, num_classes=10)
    (directory / "config.json").write_text(config.to_json())
    _conditional_generator().save(directory / "generator.keras")
    return directory


def test_labels_parse_as_a_class_a_range_or_a_comma_list():
    assert generate.parse_labels("7") == (7,)
    assert generate.parse_labels("0-3") == (0, 1, 2, 3)
    assert generate.parse_labels("1,3,5") == (1, 3, 5)
    assert generate.parse_labels("0-2, 7") == (0, 1, 2, 7)
    for text in ("", "a", "3-1", "-1", "1,,2", "256", "0-256", "1.5", "7-"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a class 0-255"):
            generate.parse_labels(text)


def test_label_sequences_repeat_the_classes_given_and_default_to_every_class_in_turn():
    np.testing.assert_array_equal(sampling.label_sequence(None, 23, 10), np.arange(23) % 10)
    np.testing.assert_array_equal(sampling.label_sequence(7, 4, 10), [7, 7, 7, 7])
    np.testing.assert_array_equal(sampling.label_sequence((1, 3, 5), 7, 10), [1, 3, 5, 1, 3, 5, 1])
    assert sampling.label_sequence(None, 5, 3).dtype == np.uint8
    with pytest.raises(UsageError, match=r"class 10, 12 is not one of the generator's 10 classes"):
        sampling.label_sequence((1, 10, 12), 5, 10)


def test_a_conditional_generator_draws_the_classes_asked_for():
    generator = _conditional_generator()
    noise = np.random.default_rng(3).standard_normal((20, NOISE_DIM), dtype=np.float32)
    sevens = sampling.generate(generator, 20, seed=3, batch_size=7, labels=7)
    expected = generator([noise, np.full(20, 7, np.int32)], training=False)
    np.testing.assert_array_equal(sevens, data.to_uint8(expected))
    images, labels = sampling.generate_with_labels(generator, 20, seed=3)
    np.testing.assert_array_equal(labels, np.arange(20) % 10)  # every class in turn
    np.testing.assert_array_equal(images[7::10], sevens[7::10])  # same noise, class 7
    assert not np.array_equal(images[6], sevens[6])  # same noise, class 6 instead of 7
    np.testing.assert_array_equal(sampling.generate(generator, 12, seed=3), images[:12])
    assert sampling.generate_with_labels(_generator(), 3)[1] is None
    with pytest.raises(UsageError, match="the generator is not conditional"):
        sampling.generate(_generator(), 3, labels=2)


def test_cli_writes_the_labels_beside_the_images_of_a_conditional_run(
    tmp_path, conditional_run_dir
):
    generator = _conditional_generator()
    sevens = run_cli(
        "--run",
        conditional_run_dir,
        "--label",
        7,
        "--n",
        30,
        "--out",
        tmp_path / "7.npz",
        "--png",
        tmp_path / "7.png",
    )
    assert sevens.returncode == 0, sevens.stderr
    assert "their classes: key 'labels'" in sevens.stdout
    every = run_cli("--run", conditional_run_dir, "--n", 30, "--out", tmp_path / "all.npz")
    assert every.returncode == 0, every.stderr
    for name, labels in (("7.npz", 7), ("all.npz", None)):
        with np.load(tmp_path / name) as archive:
            assert archive.files == ["images", "labels"]
            assert archive["labels"].dtype == np.uint8
            expected = sampling.label_sequence(labels, 30, CLASSES)
            np.testing.assert_array_equal(archive["labels"], expected)
            np.testing.assert_array_equal(
                archive["images"], sampling.generate(generator, 30, labels=labels)
            )
    picture = np.asarray(Image.open(tmp_path / "7.png"))
    np.testing.assert_array_equal(
        picture[4:60:2, 4:60:2], sampling.generate(generator, 1, labels=7)[0]
    )


CHECK_BEFORE_TENSORFLOW = """
import sys
from gan import generate
status = generate.main(sys.argv[1:])
print(status, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize(
    "run, label, message",
    [
        ("r", "3", "--label: {run_dir} is not a conditional run (train with --conditional)"),
        ("c", "3,12", "class 12 is not one of the generator's 10 classes (0-9)"),
        ("c", "9-3", "argument --label: expected a class 0-255, a range FIRST-LAST"),
    ],
)
def test_a_label_the_run_cannot_draw_is_refused_in_one_line_before_tensorflow_loads(
    tmp_path, run_dir, conditional_run_dir, run, label, message
):
    chosen = {"r": run_dir, "c": conditional_run_dir}[run]
    args = ["--run", chosen, "--label", label, "--png", tmp_path / "g.png"]
    result = run_module("gan.generate", *args)
    assert_usage_error(result, message.format(run_dir=chosen))
    probe = subprocess.run(
        [sys.executable, "-c", CHECK_BEFORE_TENSORFLOW, *map(str, args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        check=False,
    )
    if "argument --label" not in message:  # argparse exits before printing
        assert probe.stdout.split() == ["2", "False"], probe.stderr
    assert not (tmp_path / "g.png").exists()


def test_a_bare_unconditional_generator_file_refuses_a_label(tmp_path, run_dir):
    result = run_cli(
        "--generator", run_dir / "generator.keras", "--label", 1, "--png", tmp_path / "g.png"
    )
    assert_usage_error(result, "generator.keras is not a conditional generator")
