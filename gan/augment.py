"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): random, differentiable transformations applied alike to real and generated images
whenever the discriminator sees them, so that with few real images it cannot memorise them,
while the generator still gets gradients through the transformation.

Images are float32 (B, 28, 28, 1) in [-1, 1]; each transformation returns the same shape,
values still in [-1, 1], a new random draw per image and per call, from a
keras.random.SeedGenerator (so a run stays reproducible and resumable). The parameters are
DiffAugment's: translation by up to 1/8 of the side (4 px, the vacated pixels 0), cutout of a
square of half the side (14x14) set to 0, its centre anywhere on the pixel grid (so it may
reach past the border and cover less).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def translation(images, seed):
    """Shifts each image by its own whole-pixel offset (dy, dx), each in [-4, 4]; pixels
    shifted in are 0."""
    size = images.shape[1]
    shift = int(size * TRANSLATION_RATIO + 0.5)
    batch = ops.shape(images)[0]
    offsets = keras.random.randint((2, batch, 1), -shift, shift + 1, seed=seed)
    padded = ops.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]])
    # Output pixel (y, x) of image b reads padded pixel (y + shift - dy_b, x + shift - dx_b).
    rows = ops.arange(size)[None, :] + shift - offsets[0]  # (B, size)
    cols = ops.arange(size)[None, :] + shift - offsets[1]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, size, size + 2 shift, 1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def cutout(images, seed):
    """Sets a 14x14 square of each image to 0; its centre is uniform over 0..28 in each
    direction, so the square may reach past the border (and cover less)."""
    size = images.shape[1]
    half = int(size * CUTOUT_RATIO + 0.5) // 2
    batch = ops.shape(images)[0]
    # The square covers centre - half <= y < centre + half (and the same for x).
    starts = keras.random.randint((2, batch, 1, 1), 0, size + 1, seed=seed) - half
    grid = ops.arange(size)
    inside_rows = _between(grid[None, :, None] - starts[0], 2 * half)  # (B, size, 1)
    inside_cols = _between(grid[None, None, :] - starts[1], 2 * half)  # (B, 1, size)
    keep = ops.logical_not(ops.logical_and(inside_rows, inside_cols))
    return images * ops.cast(keep, images.dtype)[..., None]


def _between(offsets, width):
    return ops.logical_and(offsets >= 0, offsets < width)


AUGMENTATIONS = {"translation": translation, "cutout": cutout}


def diff_augment(images, names, seed):
    """`images` transformed by the augmentations `names` (keys of AUGMENTATIONS) in order,
    drawing from the keras.random.SeedGenerator `seed`."""
    for name in names:
        images = AUGMENTATIONS[name](images, seed)
    return images
