"""The statistics on fixed features and probabilities, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from gan import metrics


def _correlated_features(count, dims=8, shift=0.0, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((dims, dims)) / math.sqrt(dims)
    return shift + scale * rng.standard_normal((count, dims)) @ mixing


def _random_covariance(dims, seed):
    a = np.random.default_rng(seed).standard_normal((dims, dims))
    return a @ a.T + 0.1 * np.eye(dims)


def test_statistics_are_the_mean_and_unbiased_covariance():
    features = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]])
    mean, cov = metrics.feature_statistics(features)
    np.testing.assert_allclose(mean, [3.0, 4.0])
    np.testing.assert_allclose(cov, [[4.0, 6.0], [6.0, 12.0]])  # divided by N - 1 = 2


def test_frechet_distance_of_a_set_with_itself_is_zero():
    statistics = metrics.feature_statistics(_correlated_features(2000))
    assert abs(metrics.frechet_distance(*statistics, *statistics)) < 1e-9


def test_frechet_distance_of_diagonal_gaussians_equals_the_hand_computed_value():
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    # |(-1, 0, 2)|^2 = 5; sum of (a + b - 2 sqrt(ab)) = (5 - 4) + (5 - 4) + (10 - 6) = 6.
    distance = metrics.frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert distance == pytest.approx(11.0, abs=1e-9)


def _fd_with_scipy(mean_a, cov_a, mean_b, cov_b):
    """The textbook formula with scipy's general matrix square root (fine when non-singular)."""
    root = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
    return np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root)


def test_frechet_distance_of_full_covariances_matches_scipy_sqrtm_and_is_symmetric():
    mean_a, mean_b = np.arange(5.0), np.ones(5)
    cov_a, cov_b = _random_covariance(5, seed=1), _random_covariance(5, seed=2)
    expected = _fd_with_scipy(mean_a, cov_a, mean_b, cov_b)
    assert metrics.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected)
    assert metrics.frechet_distance(mean_b, cov_b, mean_a, cov_a) == pytest.approx(expected)


def test_frechet_distance_of_samples_estimates_the_distance_of_their_gaussians():
    # N(0, I) against N(3, 4 I) in 8 dimensions: 8 * 3^2 + 8 * (1 + 4 - 2 * 2) = 80.
    rng = np.random.default_rng(0)
    near = metrics.feature_statistics(rng.standard_normal((20000, 8)))
    far = metrics.feature_statistics(3 + 2 * rng.standard_normal((20000, 8)))
    assert metrics.frechet_distance(*near, *far) == pytest.approx(80, rel=0.02)
    same = metrics.feature_statistics(rng.standard_normal((20000, 8)))
    assert metrics.frechet_distance(*near, *same) < 0.01  # two samples of one Gaussian


@pytest.mark.parametrize("dims", [1, 2, 3, 6])
def test_matrix_square_roots_agree_with_scipy_sqrtm(dims):
    cov_a, cov_b = _random_covariance(dims, seed=dims), _random_covariance(dims, seed=dims + 10)
    root = metrics.psd_sqrt(cov_a)
    np.testing.assert_allclose(root, scipy.linalg.sqrtm(cov_a), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(root @ root, cov_a, rtol=1e-10, atol=1e-12)
    expected = np.trace(np.real(scipy.linalg.sqrtm(cov_a @ cov_b)))
    assert metrics.trace_sqrt_product(cov_a, cov_b) == pytest.approx(expected, rel=1e-10)


def test_trace_sqrt_of_a_singular_product_is_exact():
    # Rank-1 cov_b = v v^T: cov_a v v^T has the single non-zero eigenvalue v^T cov_a v = 97,
    # so the trace of its root is sqrt(97). Both matrices are singular, like covariances of
    # features that never fire: a general matrix square root of the product may fail here.
    cov_a = np.array(
        [[13.0, 2, -10, -10], [2, 9, -4, 0], [-10, -4, 9, 8], [-10, 0, 8, 9]]
    )  # rank 3
    v = np.array([0.0, 2, 1, 2])
    cov_b = np.outer(v, v)
    assert v @ cov_a @ v == 97
    # rel 1e-7: the zero eigenvalues come out as +-1e-15, whose square roots add ~1e-8 each.
    assert metrics.trace_sqrt_product(cov_a, cov_b) == pytest.approx(math.sqrt(97), rel=1e-7)
    assert metrics.trace_sqrt_product(cov_b, cov_a) == pytest.approx(math.sqrt(97), rel=1e-7)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    few = metrics.feature_statistics(_correlated_features(5, dims=16, seed=1))
    other = metrics.feature_statistics(_correlated_features(5, dims=16, seed=2))
    assert math.isfinite(metrics.frechet_distance(*few, *other))


def test_classifier_score_bounds_and_a_hand_computed_case():
    confident_balanced = np.eye(10)[np.arange(100) % 10]
    assert metrics.classifier_score(confident_balanced) == pytest.approx(10)
    assert metrics.classifier_score(np.full((50, 10), 0.1)) == pytest.approx(1)
    one_class = np.eye(10)[np.full(50, 3)]
    assert metrics.classifier_score(one_class) == pytest.approx(1)
    # p(y|x) = (1, 0) and (1/2, 1/2): p(y) = (3/4, 1/4);
    # KL_1 = log(4/3), KL_2 = 1/2 log(2/3) + 1/2 log(2).
    probabilities = np.array([[1.0, 0.0], [0.5, 0.5]])
    kl = [math.log(4 / 3), 0.5 * math.log(2 / 3) + 0.5 * math.log(2)]
    assert metrics.classifier_score(probabilities) == pytest.approx(math.exp(np.mean(kl)))


def test_a_single_class_covers_one_class_with_kl_log_10():
    probabilities = np.full((200, 10), 0.05)
    probabilities[:, 7] = 0.55  # every sample's vote is class 7, not confidently
    histogram = metrics.class_histogram(probabilities)
    np.testing.assert_array_equal(histogram, np.eye(10)[7])
    assert metrics.classes_covered(histogram) == 1
    assert metrics.kl_to_uniform(histogram) == pytest.approx(math.log(10), abs=1e-12)


def test_balanced_classes_cover_all_with_kl_zero_and_the_one_percent_threshold():
    histogram = metrics.class_histogram(np.eye(10)[np.arange(1000) % 10])
    assert metrics.classes_covered(histogram) == 10
    assert metrics.kl_to_uniform(histogram) == pytest.approx(0, abs=1e-12)
    # Class 0 gets exactly 1 % (covered), class 1 gets 0.9 % (not covered).
    votes = np.array([0] * 10 + [1] * 9 + [2] * 981)
    histogram = metrics.class_histogram(np.eye(10)[votes])
    assert metrics.classes_covered(histogram) == 2
    expected = sum(h * math.log(10 * h) for h in (0.01, 0.009, 0.981))
    assert metrics.kl_to_uniform(histogram) == pytest.approx(expected)


# --- conditional samples: label accuracy and the Fréchet distance within each class -------

# Four samples over three classes: the classifier votes 0, 1, 1, 2 (each row's largest).
PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6]], dtype=np.float64
)


def test_label_accuracy_is_the_share_of_samples_voted_their_own_label():
    assert metrics.label_accuracy(PROBABILITIES, [0, 1, 1, 2]) == 1.0
    assert metrics.label_accuracy(PROBABILITIES, [0, 1, 0, 0]) == 0.5  # samples 3 and 4 miss
    assert metrics.label_accuracy(PROBABILITIES, [2, 2, 2, 1]) == 0.0


def test_per_class_accuracy_counts_within_each_label_and_is_nan_without_samples():
    # Generated for 0, 0, 1, 1: class 0 gets votes 0 and 1 (1 of 2), class 1 gets 1 and 2
    # (1 of 2); no sample was generated for class 2.
    accuracy = metrics.per_class_accuracy(PROBABILITIES, [0, 0, 1, 1])
    np.testing.assert_array_equal(accuracy[:2], [0.5, 0.5])
    assert accuracy.shape == (3,) and np.isnan(accuracy[2])
    np.testing.assert_array_equal(metrics.per_class_accuracy(PROBABILITIES, [0, 1, 1, 2]), 1.0)


def test_class_frechet_distances_compare_each_class_with_its_own_reference():
    # Class 0 of the samples is class 0 of the reference shifted by (1, 0): distance 1 (same
    # covariance); class 1 is identical to its reference: 0; class 2 has a single sample.
    reference = np.array([[0.0, 0.0], [2.0, 1.0], [1.0, 3.0], [5.0, 5.0], [6.0, 5.0], [5.0, 7.0]])
    reference_labels = np.array([0, 0, 0, 1, 1, 1])
    statistics = metrics.class_statistics(reference, reference_labels, 3)
    assert statistics[2] is None  # no reference images of class 2
    np.testing.assert_allclose(statistics[0][0], [1.0, 4 / 3])
    samples = np.concatenate([reference[:3] + [1.0, 0.0], reference[3:], [[9.0, 9.0]]])
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    distances = metrics.class_frechet_distances(samples, labels, statistics)
    np.testing.assert_allclose(distances[:2], [1.0, 0.0], atol=1e-9)
    assert np.isnan(distances[2])
    # Against class 1's reference instead, class 0's samples are at least the squared
    # distance of the means away: |(2, 4/3) - (16/3, 17/3)|^2 = 269/9.
    swapped = metrics.class_frechet_distances(samples[:3], [1, 1, 1], statistics)
    assert swapped[1] >= 269 / 9 and np.isnan(swapped[0])
