"""The GAN step of experiments.peers in PyTorch, eager: one Python call per step."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from experiments import peers


def mlp(kernels, hidden, output) -> nn.Sequential:
    """Linear layers of the given (in, out) `kernels` (Glorot-uniform, zero biases), each but
    the last followed by the modules `hidden()` returns, the last by `output` (or nothing)."""
    layers = []
    for index, (inp, out) in enumerate(kernels):
        linear = nn.Linear(inp, out)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, *(hidden() if index < len(kernels) - 1 else output)]
    return nn.Sequential(*layers)


class TorchStep:
    """A variant (experiments.timing): a call runs `steps` steps on images uint8 (N, 28, 28).

    generator: noise float32 (B, 128) -> images float32 (B, 784) in [-1, 1];
    discriminator: images (B, 784) -> logits (B, 1)."""

    def __init__(self, images: np.ndarray, seed: int = 0):
        torch.manual_seed(seed)
        self.images = torch.from_numpy(images.reshape(len(images), -1))
        self.generator = mlp(peers.GENERATOR_KERNELS, lambda: [nn.ReLU()], [nn.Tanh()])
        self.discriminator = mlp(
            peers.DISCRIMINATOR_KERNELS, lambda: [nn.ReLU(), nn.Dropout(peers.DROPOUT)], []
        )
        self.g_adam, self.d_adam = (
            torch.optim.Adam(
                network.parameters(),
                lr=peers.LEARNING_RATE,
                betas=(peers.BETA_1, peers.BETA_2),
                eps=peers.EPSILON,
            )
            for network in (self.generator, self.discriminator)
        )
        self.loss = nn.BCEWithLogitsLoss()
        self.ones = torch.ones(peers.BATCH_SIZE, 1)
        self.zeros = torch.zeros(peers.BATCH_SIZE, 1)
        self.losses = None  # (d_loss, g_loss) of the last step
        self(2)  # warm up before timing

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator update, then one generator update on the same G(z)."""
        batch = torch.randint(len(self.images), (peers.BATCH_SIZE,))
        real = self.images[batch].float() / 127.5 - 1
        fake = self.generator(torch.randn(peers.BATCH_SIZE, peers.NOISE_DIM))
        d_loss = 0.5 * (
            self.loss(self.discriminator(real), self.ones)
            + self.loss(self.discriminator(fake.detach()), self.zeros)
        )
        self.d_adam.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_adam.step()
        g_loss = self.loss(self.discriminator(fake), self.ones)
        self.g_adam.zero_grad(set_to_none=True)
        # Gradients of the generator only: through D to G(z), no weight gradients of D.
        g_loss.backward(inputs=list(self.generator.parameters()))
        self.g_adam.step()
        return d_loss.detach(), g_loss.detach()

    def __call__(self, steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            self.losses = self.step()
        return steps / (time.perf_counter() - started)
