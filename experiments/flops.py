"""The work in one training step and what this CPU can do: FLOPs per step counted from the
layer shapes (matrix products only), and the GFLOP/s of fp32 matrix products timed here."""

from __future__ import annotations

import time
from collections import Counter

import keras
import tensorflow as tf


def step_matmuls(generator_kernels, discriminator_kernels, batch_size: int):
    """(m, k, n) of every matrix product one GAN step computes with Dense-layer networks whose
    kernels have the given (in, out) shapes, input side first (see dense_kernels).

    For a layer with an (in, out) kernel: forward (B, in) x (in, out); weight gradient
    (in, B) x (B, out); input gradient (B, out) x (out, in). G runs forward once and backward
    once (no input gradient for its first layer: the noise is not trained). D runs forward three
    times (real and fake in its own update, fake in G's); its own update needs weight gradients
    for real and fake and input gradients below the top layer only; G's update needs input
    gradients through every D layer and no D weight gradients.
    """
    products = []
    for index, (inp, out) in enumerate(generator_kernels):
        products += [(batch_size, inp, out), (inp, batch_size, out)]
        products += [(batch_size, out, inp)] if index else []
    for index, (inp, out) in enumerate(discriminator_kernels):
        products += [(batch_size, inp, out)] * 3 + [(inp, batch_size, out)] * 2
        products += [(batch_size, out, inp)] * (3 if index else 1)
    return products


def dense_kernels(model: keras.Model) -> list[tuple[int, int]]:
    """(in, out) of each Dense layer's kernel of a Keras model, input side first."""
    return [
        tuple(layer.kernel.shape) for layer in model.layers if isinstance(layer, keras.layers.Dense)
    ]


def flops(products) -> int:
    """Floating-point operations of (m, k, n) matrix products: 2 m k n each."""
    return sum(2 * m * k * n for m, k, n in products)


def matmul_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of an (m, k) x (k, n) fp32 matrix product, repeated in-graph for ~seconds."""
    a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
    repeats = max(3, int(seconds * 3e11 / (2 * m * k * n)))

    @tf.function
    def repeated(a, b):
        total = tf.zeros((), tf.float32)
        for _ in tf.range(repeats):
            # Summing one element keeps every product alive without an (m, n) addition.
            total += tf.matmul(a, b)[0, 0]
        return total

    repeated(a, b).numpy()
    started = time.perf_counter()
    repeated(a, b).numpy()
    return 2 * m * k * n * repeats / (time.perf_counter() - started) / 1e9


def layer_shape_gflops(products) -> float:
    """GFLOP/s the given matrix products reach at their own shapes, timed one shape at a
    time: the best a step made only of these products could do."""
    seconds = sum(
        flops([shape]) * count / (matmul_gflops(*shape, seconds=0.2) * 1e9)
        for shape, count in Counter(products).items()
    )
    return flops(products) / seconds / 1e9
