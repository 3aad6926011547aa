"""Small generators and run directories for the tests of gan.sampling and gan.generate: what
gan.train leaves behind, made in a moment (the fixtures `run_dir` and `conditional_run_dir` of
conftest.py are built from these)."""

from __future__ import annotations

import keras
import numpy as np

from gan.checkpoints import Checkpoints, fingerprint
from gan.config import Config
from gan.gan import build_gan
from gan.models import GENERATOR_EMBEDDING, build_generator, generator_for

NOISE_DIM = 16
CLASSES = 10


def make_generator(seed=1):
    """The textbook generator on NOISE_DIM noise, its weights drawn with `seed`."""
    keras.utils.set_random_seed(seed)
    return build_generator("mlp", NOISE_DIM)


def conditional_generator(seed=1):
    """A conditional mlp generator of CLASSES classes whose labels visibly matter."""
    keras.utils.set_random_seed(seed)
    config = Config(conditional=True, noise_dim=NOISE_DIM).resolved(1000, False, CLASSES)
    generator = generator_for(config)
    # A label embedding that matters as much as the noise (it starts near 0).
    embedding = generator.get_layer(GENERATOR_EMBEDDING)
    embedding.kernel.assign(np.random.default_rng(seed).standard_normal((CLASSES, 50)))
    return generator


def constant_generator(value):
    """noise (B, 4) -> every pixel `value`."""
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(784, kernel_initializer="zeros", bias_initializer="zeros"),
            keras.layers.Lambda(lambda x: x * 0 + value),
            keras.layers.Reshape((28, 28, 1)),
        ]
    )


def write_run(directory, conditional=False):
    """A finished run as gan.train leaves it in `directory`: config.json and generator.keras."""
    directory.mkdir(parents=True)
    options = {"conditional": True, "num_classes": CLASSES} if conditional else {}
    config = Config(epochs=5, noise_dim=NOISE_DIM, run=directory.name, **options)
    (directory / "config.json").write_text(config.to_json())
    (conditional_generator() if conditional else make_generator()).save(
        directory / "generator.keras"
    )
    return directory


def save_checkpoint(run_dir, generator, epoch):
    """What training writes (gan.checkpoints): the whole training state after `epoch` epochs,
    here of a GAN whose generator has `generator`'s weights."""
    model = build_gan(Config(noise_dim=NOISE_DIM, jit=False))
    model.generator.set_weights(generator.get_weights())
    saver = Checkpoints(
        model, run_dir / "checkpoints", fingerprint(np.zeros((1, 28, 28), np.uint8))
    )
    saver.save(epoch)
