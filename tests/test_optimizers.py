"""FusedAdam computes Keras' Adam update, in TensorFlow's one-pass kernel."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan.optimizers import FusedAdam


def _train(optimizer_class, gradients, **options):
    """Applies a fixed sequence of gradients to two fresh variables; returns the variables'
    and the optimizer's values."""
    rng = np.random.default_rng(0)
    variables = [
        keras.Variable(rng.normal(size=(64, 32)).astype("float32")),
        keras.Variable(rng.normal(size=(32,)).astype("float32")),
    ]
    optimizer = optimizer_class(2e-4, beta_1=0.5, **options)
    optimizer.build(variables)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    for grads in gradients:
        step(grads)
    return [v.numpy() for v in variables + optimizer.variables]


@pytest.mark.parametrize("options", [{}, {"amsgrad": True}])
def test_fused_adam_makes_keras_adams_updates(options):
    rng = np.random.default_rng(1)
    gradients = [
        [
            rng.normal(size=(64, 32)).astype("float32") * scale,
            rng.normal(size=(32,)).astype("float32"),
        ]
        for scale in (1.0, 1e-3, 10.0, 0.5, 2.0)
    ]
    fused, reference = (
        _train(FusedAdam, gradients, **options),
        _train(keras.optimizers.Adam, gradients, **options),
    )
    assert len(fused) == len(reference)  # the same slot variables: interchangeable checkpoints
    for a, b in zip(fused, reference, strict=True):
        # Equal up to float32 rounding. The largest difference is in the second moment: the
        # kernel computes 1 - beta_2 in float32 (1 - 0.999f = 0.00099998712), Keras in Python
        # (0.001), a relative difference of 1.3e-5 in that factor.
        np.testing.assert_allclose(a, b, rtol=0, atol=3e-5 * float(np.abs(b).max()))
    assert not np.array_equal(fused[0], _train(FusedAdam, [])[0])  # the updates did move it


def test_fused_adam_uses_the_fused_kernel():
    variable = keras.Variable(np.ones((4,), "float32"))
    optimizer = FusedAdam(1e-3)
    optimizer.build([variable])
    graph = (
        tf.function(lambda g: optimizer.apply([g], [variable]))
        .get_concrete_function(tf.TensorSpec((4,), tf.float32))
        .graph
    )
    ops = {op.type for op in graph.get_operations()}
    assert "ResourceApplyAdam" in ops and "Sqrt" not in ops


@pytest.mark.parametrize("adam", [FusedAdam, keras.optimizers.Adam])
def test_build_gan_gives_each_network_its_own_adam_of_the_chosen_class(adam):
    from gan.config import Config
    from gan.gan import build_gan

    config = Config(lr=3e-4, beta1=0.4).resolved(1000, has_gpu=False)
    model = build_gan(config) if adam is FusedAdam else build_gan(config, adam=adam)
    assert model.d_optimizer is not model.g_optimizer
    for optimizer in (model.d_optimizer, model.g_optimizer):
        assert type(optimizer) is adam
        assert float(optimizer.learning_rate) == pytest.approx(3e-4)
        assert optimizer.beta_1 == pytest.approx(0.4)
