"""The chapter's training loop on Keras 3, as a timed variant (see experiments.timing)."""

from __future__ import annotations

import time
import warnings

import keras
import numpy as np

from gan.models import mlp_generator


class Textbook:
    """generator.predict + discriminator.train_on_batch (real, then fake) + gan.train_on_batch
    per step, on batches of `images` (float32 (N, 28, 28, 1) in [-1, 1]) drawn at random. Its
    discriminator has a sigmoid output, one Adam is shared by both compiled models, and
    `discriminator.trainable = False` is set before compiling the stacked model -- which on
    Keras 3 also freezes the discriminator's own train_on_batch."""

    def __init__(self, images: np.ndarray, batch_size: int, noise_dim: int = 128):
        keras.utils.set_random_seed(0)
        self.images, self.batch_size, self.noise_dim = images, batch_size, noise_dim
        self.rng = np.random.default_rng(0)
        self.generator = mlp_generator(noise_dim)
        self.discriminator = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.discriminator.compile(loss="binary_crossentropy", optimizer=optimizer)
        self.discriminator.trainable = False
        self.gan = keras.Sequential([keras.Input((noise_dim,)), self.generator, self.discriminator])
        self.gan.compile(loss="binary_crossentropy", optimizer=optimizer)
        self.before = [w.numpy() for w in self.discriminator.weights]
        self.ones, self.zeros = np.ones((batch_size, 1)), np.zeros((batch_size, 1))
        self(2)  # build the train and predict functions before timing

    def __call__(self, steps: int) -> float:
        """Runs `steps` steps; returns steps per second."""
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "The model does not have any trainable weights."
            for _ in range(steps):
                noise = self.rng.normal(0, 1, (self.batch_size, self.noise_dim))
                fake = self.generator.predict(noise, verbose=0)
                real = self.images[self.rng.integers(0, len(self.images), self.batch_size)]
                self.discriminator.train_on_batch(real, self.ones)
                self.discriminator.train_on_batch(fake, self.zeros)
                self.gan.train_on_batch(noise, self.ones)
        return steps / (time.perf_counter() - started)

    @property
    def discriminator_trained(self) -> bool:
        """Whether the discriminator's weights changed since construction."""
        after = [w.numpy() for w in self.discriminator.weights]
        return any(not np.array_equal(a, b) for a, b in zip(self.before, after, strict=True))
