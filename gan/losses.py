"""The adversarial losses (--loss), computed from the discriminator's logits (B, 1).

Each loss has two parts: `discriminator(real_logits, fake_logits)`, which the discriminator
minimises (the mean of its real and its fake term, as in the textbook), and
`generator(fake_logits)`, which the generator minimises. Every term is a keras.losses.Loss
averaging over the batch, so under a tf.distribute strategy with N replicas each returns the
replica's mean / N, as GAN.train_step requires.
"""

from __future__ import annotations

import keras
from keras import ops


class NonSaturating:
    """The textbook's binary cross-entropy on logits. D: -log D(x) - log(1 - D(G(z)));
    G: -log D(G(z)) (the non-saturating form: it maximises log D(G(z)) rather than minimising
    log(1 - D(G(z))), whose gradient vanishes while D rejects the fakes confidently)."""

    def __init__(self):
        self.cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)

    def discriminator(self, real_logits, fake_logits):
        return 0.5 * (
            self.cross_entropy(ops.ones_like(real_logits), real_logits)
            + self.cross_entropy(ops.zeros_like(fake_logits), fake_logits)
        )

    def generator(self, fake_logits):
        return self.cross_entropy(ops.ones_like(fake_logits), fake_logits)


class Hinge:
    """The hinge loss of SAGAN and BigGAN. D: relu(1 - D(x)) + relu(1 + D(G(z))), which stops
    pushing a logit once it is past the margin; G: -D(G(z))."""

    def __init__(self):
        self.hinge = keras.losses.Hinge()  # labels 0/1 count as -1/+1
        self.negative_logit = _NegativeLogit(name="negative_logit")

    def discriminator(self, real_logits, fake_logits):
        return 0.5 * (
            self.hinge(ops.ones_like(real_logits), real_logits)
            + self.hinge(ops.zeros_like(fake_logits), fake_logits)
        )

    def generator(self, fake_logits):
        return self.negative_logit(ops.zeros_like(fake_logits), fake_logits)


class _NegativeLogit(keras.losses.Loss):
    """-logit, averaged like every Keras loss (labels are ignored)."""

    def call(self, y_true, y_pred):
        return -ops.mean(y_pred, axis=-1)


LOSSES = {"nonsaturating": NonSaturating, "hinge": Hinge}
