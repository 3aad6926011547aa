"""The networks. Images are float32 (B, 28, 28, 1) in [-1, 1]; noise is float32 (B, noise_dim).

`build_generator(arch, noise_dim)` maps noise to images (tanh output); `build_discriminator(arch)`
maps images to one real/fake **logit** per image (no sigmoid: the loss applies it, which is
numerically stable). Each architecture is one entry of ARCHITECTURES.
"""

from __future__ import annotations

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)
IMAGE_SIZE = 28 * 28
# Under a mixed-precision policy the networks compute in float16 or bfloat16, but their last
# layers output float32: logits feed the losses, whose logs and sums need float32's precision,
# and images are float32 everywhere else. Under the default float32 policy this changes nothing.
OUTPUT_DTYPE = "float32"


def mlp_generator(noise_dim: int) -> keras.Sequential:
    """The textbook generator: noise -> 256 relu -> 512 relu -> 784 tanh (566,800 params
    for noise_dim 128)."""
    return keras.Sequential(
        [
            keras.Input((noise_dim,)),
            layers.Dense(256, activation="relu"),
            layers.Dense(512, activation="relu"),
            layers.Dense(IMAGE_SIZE, activation="tanh"),
            layers.Reshape(IMAGE_SHAPE, dtype=OUTPUT_DTYPE),
        ],
        name="generator",
    )


def mlp_discriminator() -> keras.Sequential:
    """The textbook discriminator: 784 -> 256 relu -> dropout 0.3 -> 1 logit (201,217 params)."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(1, dtype=OUTPUT_DTYPE),
        ],
        name="discriminator",
    )


# arch name -> (generator builder taking noise_dim, discriminator builder)
ARCHITECTURES = {"mlp": (mlp_generator, mlp_discriminator)}


def build_generator(arch: str, noise_dim: int) -> keras.Model:
    return ARCHITECTURES[arch][0](noise_dim)


def build_discriminator(arch: str) -> keras.Model:
    return ARCHITECTURES[arch][1]()
