"""The networks match the textbook exactly and output what the GAN expects."""

from __future__ import annotations

import keras
import numpy as np

from gan import config, models


def test_textbook_parameter_counts():
    assert models.build_generator("mlp", 128).count_params() == 566_800
    assert models.build_discriminator("mlp").count_params() == 201_217


def test_textbook_layer_widths():
    generator = models.build_generator("mlp", 128)
    dense = [layer for layer in generator.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [
        (256, "relu"),
        (512, "relu"),
        (784, "tanh"),
    ]
    discriminator = models.build_discriminator("mlp")
    dropout = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in dropout] == [0.3]


def test_generator_maps_noise_to_images_in_tanh_range():
    images = models.build_generator("mlp", 16)(np.random.default_rng(0).normal(size=(5, 16)) * 50)
    assert images.shape == (5, 28, 28, 1)
    assert np.all(np.abs(np.asarray(images)) <= 1)


def test_discriminator_outputs_unbounded_logits_not_probabilities():
    discriminator = models.build_discriminator("mlp")
    assert discriminator.layers[-1].activation.__name__ == "linear"  # no sigmoid layer
    images = np.random.default_rng(0).uniform(-1, 1, (64, 28, 28, 1)).astype("float32")
    discriminator.layers[-1].bias.assign([5.0])  # a logit past 1 cannot be a probability
    logits = np.asarray(discriminator(images, training=False))
    assert logits.shape == (64, 1) and logits.max() > 1


def test_every_cli_architecture_has_builders():
    assert set(config.ARCHITECTURES) == set(models.ARCHITECTURES)
