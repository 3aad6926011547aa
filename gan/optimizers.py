"""Adam with TensorFlow's fused update kernel.

Keras 3's Adam updates each variable with about a dozen separate elementwise ops (sub, mul,
square, sqrt, div, assign...), each a full pass over the variable's memory. TensorFlow's
ResourceApplyAdam kernel does the same update in one pass, which makes the default step faster
on a CPU: the benchmark's `default, Keras Adam` row measures by how much (docs/performance.md).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam, updating each variable with tf.raw_ops.ResourceApplyAdam.

    The same formula (lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t); m += (g - m)(1 - beta_1);
    v += (g^2 - v)(1 - beta_2); w -= lr_t * m / (sqrt(v) + epsilon)) and the same slot variables
    as Adam, so checkpoints of the two are interchangeable; results agree to float32 rounding
    (tests/test_optimizers.py). Under a tf.distribute strategy, and with amsgrad, it uses Adam's
    own update, which Keras knows how to distribute.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or tf.distribute.has_strategy():
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=ops.power(ops.cast(self.beta_1, dtype), step),
            beta2_power=ops.power(ops.cast(self.beta_2, dtype), step),
            lr=ops.cast(learning_rate, dtype),
            beta1=ops.cast(self.beta_1, dtype),
            beta2=ops.cast(self.beta_2, dtype),
            epsilon=ops.cast(self.epsilon, dtype),
            grad=ops.cast(gradient, dtype),
        )


def _handle(variable):
    """The resource handle of a tf.Variable or of a Keras variable (which wraps one)."""
    return variable.handle if isinstance(variable, tf.Variable) else variable.value.handle
