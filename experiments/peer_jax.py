"""The GAN step of experiments.peers in JAX: jax.jit over the whole step, lax.scan over
several steps per compiled call."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import peers

ADAM = optax.adam(peers.LEARNING_RATE, b1=peers.BETA_1, b2=peers.BETA_2, eps=peers.EPSILON)


def init_mlp(key, kernels) -> list[tuple[jax.Array, jax.Array]]:
    """(kernel (in, out) Glorot-uniform, bias (out,) zeros) for each (in, out) of `kernels`."""
    glorot = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(kernels))
    return [(glorot(k, shape), jnp.zeros(shape[1])) for k, shape in zip(keys, kernels, strict=True)]


def generator(params, noise):
    """noise float32 (B, 128) -> images float32 (B, 784) in [-1, 1]."""
    *hidden, (kernel, bias) = params
    for w, b in hidden:
        noise = jax.nn.relu(noise @ w + b)
    return jnp.tanh(noise @ kernel + bias)


def discriminator(params, images, key):
    """images float32 (B, 784) -> logits float32 (B,), dropout on (training mode)."""
    *hidden, (kernel, bias) = params
    for (w, b), k in zip(hidden, jax.random.split(key, len(hidden)), strict=True):
        images = jax.nn.relu(images @ w + b)
        keep = jax.random.bernoulli(k, 1 - peers.DROPOUT, images.shape)
        images = jnp.where(keep, images / (1 - peers.DROPOUT), 0)
    return (images @ kernel + bias)[:, 0]


def bce(logits, label: float):
    """Mean binary cross-entropy of logits (B,) against one label for all."""
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def train_step(state, real, key):
    """One discriminator update, then one generator update on the same G(z).
    state: (generator params, discriminator params, their Adam states); real: float32
    (B, 784) in [-1, 1]. Returns the new state and (d_loss, g_loss)."""
    g_params, d_params, g_adam, d_adam = state
    noise_key, real_key, fake_key, g_key = jax.random.split(key, 4)
    noise = jax.random.normal(noise_key, (real.shape[0], peers.NOISE_DIM))
    fake, generator_vjp = jax.vjp(lambda g: generator(g, noise), g_params)

    def d_loss_of(d):
        real_loss = bce(discriminator(d, real, real_key), 1.0)
        return 0.5 * (real_loss + bce(discriminator(d, fake, fake_key), 0.0))

    d_loss, d_grads = jax.value_and_grad(d_loss_of)(d_params)
    updates, d_adam = ADAM.update(d_grads, d_adam, d_params)
    d_params = optax.apply_updates(d_params, updates)
    # The generator's gradient: through the updated discriminator to G(z) (no weight gradients
    # of D), then back through the generator's recorded forward pass.
    g_loss, fake_grad = jax.value_and_grad(lambda f: bce(discriminator(d_params, f, g_key), 1.0))(
        fake
    )
    (g_grads,) = generator_vjp(fake_grad)
    updates, g_adam = ADAM.update(g_grads, g_adam, g_params)
    g_params = optax.apply_updates(g_params, updates)
    return (g_params, d_params, g_adam, d_adam), (d_loss, g_loss)


@functools.partial(jax.jit, static_argnames="steps")
def train_steps(state, images, key, steps: int):
    """`steps` train_steps in one compiled call, each on a batch drawn at random from images
    uint8 (N, 784). Returns the new state and (d_loss, g_loss), each float32 (steps,)."""
    index_key, step_key = jax.random.split(key)
    indices = jax.random.randint(index_key, (steps, peers.BATCH_SIZE), 0, images.shape[0])

    def body(state, inputs):
        batch, key = inputs
        return train_step(state, images[batch].astype(jnp.float32) / 127.5 - 1, key)

    return jax.lax.scan(body, state, (indices, jax.random.split(step_key, steps)))


class JaxStep:
    """A variant (experiments.timing): a call runs a whole number of compiled calls of
    `steps_per_call` steps on images uint8 (N, 28, 28)."""

    def __init__(self, images: np.ndarray, steps_per_call: int, seed: int = 0):
        self.per_call = steps_per_call
        self.images = jnp.asarray(images.reshape(len(images), -1))
        g_key, d_key, self.key = jax.random.split(jax.random.key(seed), 3)
        g_params = init_mlp(g_key, peers.GENERATOR_KERNELS)
        d_params = init_mlp(d_key, peers.DISCRIMINATOR_KERNELS)
        self.state = (g_params, d_params, ADAM.init(g_params), ADAM.init(d_params))
        self.losses = None  # (d_loss, g_loss) of the last call's steps
        self(self.per_call)  # compile before timing

    def __call__(self, steps: int) -> float:
        calls = max(1, steps // self.per_call)
        started = time.perf_counter()
        for _ in range(calls):
            self.key, key = jax.random.split(self.key)
            self.state, self.losses = train_steps(self.state, self.images, key, self.per_call)
        jax.block_until_ready(self.state)
        return calls * self.per_call / (time.perf_counter() - started)
