"""DiffAugment: shapes and ranges kept, what each transformation does to an image, and
gradients that pass through to the images."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from gan.augment import cutout, diff_augment, translation

BATCH = 64


def _dot_images():
    """-1 everywhere except one +1 pixel at (14, 14): float32 (BATCH, 28, 28, 1)."""
    images = -np.ones((BATCH, 28, 28, 1), np.float32)
    images[:, 14, 14] = 1.0
    return images


def _random_images(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (BATCH, 28, 28, 1)).astype(np.float32)


def test_each_augmentation_keeps_shape_dtype_and_range():
    images = _random_images()
    for names in (("translation",), ("cutout",), ("translation", "cutout")):
        out = diff_augment(images, names, keras.random.SeedGenerator(0)).numpy()
        assert out.shape == images.shape and out.dtype == np.float32
        assert out.min() >= -1 and out.max() <= 1
        assert not np.array_equal(out, images)


def test_translation_moves_the_image_by_at_most_4_pixels_filling_with_zeros():
    moved = translation(_dot_images(), keras.random.SeedGenerator(0)).numpy()[..., 0]
    offsets = set()
    for image in moved:
        (y,), (x,) = np.nonzero(image == 1.0)  # the dot is still there, exactly once
        offsets.add((y - 14, x - 14))
        assert abs(y - 14) <= 4 and abs(x - 14) <= 4
        # What is neither the dot, nor the shifted background (-1), is the zero fill.
        assert set(np.unique(image)) <= {-1.0, 0.0, 1.0}
        assert (image == 0).any() == ((y, x) != (14, 14))
    assert len(offsets) > 10  # each image draws its own offset


def test_cutout_zeroes_one_square_of_at_most_14x14():
    images = -np.ones((BATCH, 28, 28, 1), np.float32)
    cut = cutout(images, keras.random.SeedGenerator(0)).numpy()[..., 0]
    sizes = set()
    for image in cut:
        rows, cols = np.nonzero(image == 0)
        assert len(rows) > 0
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert height <= 14 and width <= 14 and len(rows) == height * width  # one rectangle
        sizes.add((height, width))
    assert (14, 14) in sizes and len(sizes) > 1  # whole squares, and squares cut by the border


def test_gradients_reach_the_images_through_both_augmentations():
    images = tf.constant(_random_images())
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = diff_augment(images, ("translation", "cutout"), keras.random.SeedGenerator(0))
        total = tf.reduce_sum(out)
    gradient = tape.gradient(total, images).numpy()
    # Every output pixel reads one input pixel or none: gradients of 1 (kept) and 0 (dropped).
    assert set(np.unique(gradient)) == {0.0, 1.0}
