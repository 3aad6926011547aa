"""The sample-quality statistics, as plain NumPy/SciPy math on classifier outputs.

features: float (N, D) activations of the classifier's penultimate layer.
probabilities: float (N, K) class probabilities p(y|x), rows summing to 1.
Nothing here knows about networks or images, so every formula is tested on fixed inputs.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy  # x log y, 0 where x == 0 (the limit of x log x)

COVERAGE_THRESHOLD = 0.01  # a class is "covered" when at least 1 % of the samples fall in it


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Fréchet distance between the Gaussians N(mean_a, cov_a) and N(mean_b, cov_b):

        |mean_a - mean_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2))

    0 for identical statistics; larger is further apart.
    """
    difference = mean_a - mean_b
    return float(
        difference @ difference
        + np.trace(cov_a)
        + np.trace(cov_b)
        - 2 * trace_sqrt_product(cov_a, cov_b)
    )


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((cov_a cov_b)^(1/2)) for symmetric positive semi-definite matrices.

    cov_a cov_b has the eigenvalues of the symmetric PSD matrix S = cov_a^(1/2) cov_b
    cov_a^(1/2), so the trace is the sum of the square roots of S's eigenvalues. Unlike
    scipy.linalg.sqrtm(cov_a @ cov_b) (a Schur method for general matrices), this stays exact
    when both covariances are singular, as they are when some features never fire: sqrtm then
    returns NaN and the usual FID code falls back to adding 1e-6 to the diagonals.
    """
    root_a = psd_sqrt(cov_a)
    eigenvalues = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())  # clip: -1e-15 is round-off


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric PSD square root of a symmetric PSD matrix, by eigendecomposition."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def classifier_score(probabilities: np.ndarray) -> float:
    """The Inception Score with our classifier: exp(mean over x of KL(p(y|x) || p(y))), where
    p(y) is the mean of p(y|x) over the samples. Between 1 (every sample gets the same class
    distribution) and K (confident predictions spread evenly over all K classes)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    marginal = probabilities.mean(axis=0)
    kl = np.sum(xlogy(probabilities, probabilities) - xlogy(probabilities, marginal), axis=1)
    return float(np.exp(kl.mean()))


def class_histogram(probabilities: np.ndarray) -> np.ndarray:
    """Fraction of samples (K,) whose most probable class is each class."""
    probabilities = np.asarray(probabilities)
    counts = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    return counts / len(probabilities)


def classes_covered(histogram: np.ndarray) -> int:
    """How many classes get at least COVERAGE_THRESHOLD of the samples."""
    return int(np.sum(np.asarray(histogram) >= COVERAGE_THRESHOLD))


def kl_to_uniform(histogram: np.ndarray) -> float:
    """KL(histogram || uniform) = sum_k h_k log(K h_k), in nats: 0 when every class is equally
    frequent, log(K) when all samples are one class."""
    histogram = np.asarray(histogram, dtype=np.float64)
    return float(np.sum(xlogy(histogram, histogram * len(histogram))))


# --- conditional generation: samples that come with the class they were generated for -----
# labels: int (N,), the class each sample was generated for (or, for real images, is).


def label_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose most probable class is their label, in [0, 1]."""
    return float(np.mean(np.asarray(probabilities).argmax(axis=1) == np.asarray(labels)))


def per_class_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """label_accuracy among the samples of each label: float (K,) for the K classes of
    `probabilities`; NaN for a class no sample has."""
    labels = np.asarray(labels)
    hits = np.asarray(probabilities).argmax(axis=1) == labels
    count = probabilities.shape[1]
    totals = np.bincount(labels, minlength=count)[:count]
    correct = np.bincount(labels, weights=hits, minlength=count)[:count]
    return np.where(totals > 0, correct / np.maximum(totals, 1), np.nan)


def class_statistics(features: np.ndarray, labels: np.ndarray, count: int) -> list:
    """feature_statistics of the samples of each class 0..count-1: a list of (mean, cov),
    None for a class with fewer than 2 samples (no covariance)."""
    labels = np.asarray(labels)
    return [
        feature_statistics(features[labels == c]) if np.sum(labels == c) >= 2 else None
        for c in range(count)
    ]


def class_frechet_distances(
    features: np.ndarray, labels: np.ndarray, reference: list
) -> np.ndarray:
    """The Fréchet distance, class by class, between the samples of class c and the reference
    statistics of class c (`reference`: class_statistics of real images): float (K,) for
    K = len(reference); NaN where either side has fewer than 2 images."""
    statistics = class_statistics(features, labels, len(reference))
    return np.array(
        [
            np.nan if ours is None or theirs is None else frechet_distance(*ours, *theirs)
            for ours, theirs in zip(statistics, reference, strict=True)
        ]
    )
