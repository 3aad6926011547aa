"""The textbook GAN step in other frameworks, for experiments/benchmark.py: what the peers
share, and the peers whose framework is installed.

Every peer trains the networks of `python -m gan.train` with default options: generator
noise (B, 128) -> 256 relu -> 512 relu -> 784 tanh, discriminator 784 -> 256 relu ->
dropout 0.3 -> 1 logit, Glorot-uniform kernels and zero biases; binary cross-entropy on
logits, d_loss the mean of the real and fake losses, the non-saturating g_loss; one
discriminator update then one generator update on the same G(z); a separate Adam for each
network (lr 2e-4, beta_1 0.5, beta_2 0.999, epsilon 1e-7 as Keras'); batches of 128 real
images (B, 784) scaled to [-1, 1], drawn at random from uint8 (N, 28, 28) images. Each peer is
a variant of experiments.timing: `peer(steps) -> steps/s`.
"""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np

from gan.config import MLP_HIDDEN, Config

_DEFAULTS = Config()
NOISE_DIM, BATCH_SIZE = _DEFAULTS.noise_dim, _DEFAULTS.batch_size
LEARNING_RATE, BETA_1, BETA_2, EPSILON = _DEFAULTS.lr, _DEFAULTS.beta1, 0.999, 1e-7
DROPOUT = 0.3  # gan.models.mlp_discriminator's
IMAGE_SIZE = 28 * 28


def _kernels(widths) -> list[tuple[int, int]]:
    return list(itertools.pairwise(widths))


# (in, out) of each layer's kernel, input side first (experiments.flops.step_matmuls)
GENERATOR_KERNELS = _kernels([NOISE_DIM, *MLP_HIDDEN["mlp"][0], IMAGE_SIZE])
DISCRIMINATOR_KERNELS = _kernels([IMAGE_SIZE, *MLP_HIDDEN["mlp"][1], 1])


def available(images: np.ndarray, steps_per_call: int) -> tuple[dict, list[str]]:
    """The peers whose framework is installed, built on `images` (uint8 (N, 28, 28)):
    (row name -> variant, a note for each peer left out). JAX runs `steps_per_call` steps
    per compiled call; PyTorch runs eagerly, one step at a time."""
    variants, notes = {}, []
    if _installed(("jax", "optax"), "pip install -e '.[bench]'", notes):
        from experiments.peer_jax import JaxStep

        variants[f"JAX step×{steps_per_call} (jit, scan)"] = JaxStep(images, steps_per_call)
    if _installed(("torch",), "pip install torch", notes):
        from experiments.peer_torch import TorchStep

        variants["PyTorch eager"] = TorchStep(images)
    return variants, notes


def _installed(packages: tuple[str, ...], install: str, notes: list[str]) -> bool:
    """Whether every one of `packages` is importable; if not, says so in `notes`."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        notes.append(f"{', '.join(missing)} not installed: row skipped ({install})")
    return not missing
