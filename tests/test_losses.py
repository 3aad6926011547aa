"""The adversarial losses against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gan.losses import Hinge, NonSaturating

REAL = np.array([[2.0], [-1.0], [0.5]], np.float32)
FAKE = np.array([[-3.0], [0.0], [1.5]], np.float32)


def _softplus(x):
    return math.log1p(math.exp(x))


def test_non_saturating_is_the_textbooks_binary_cross_entropy_on_logits():
    loss = NonSaturating()
    # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l).
    real_term = np.mean([_softplus(-x) for x in REAL[:, 0]])
    fake_term = np.mean([_softplus(x) for x in FAKE[:, 0]])
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(
        0.5 * (real_term + fake_term), rel=1e-6
    )
    assert float(loss.generator(FAKE)) == pytest.approx(
        np.mean([_softplus(-x) for x in FAKE[:, 0]]), rel=1e-6
    )


def test_hinge_stops_at_the_margin_and_the_generator_raises_the_fake_logit():
    loss = Hinge()
    # relu(1 - real): 0 (2 is past the margin), 2, 0.5; relu(1 + fake): 0, 1, 2.5.
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(
        0.5 * ((0 + 2 + 0.5) / 3 + (0 + 1 + 2.5) / 3), rel=1e-6
    )
    assert float(loss.generator(FAKE)) == pytest.approx(-(-3.0 + 0.0 + 1.5) / 3, rel=1e-6)
