"""Self-conditioning (--self-condition K; Liu et al. 2020, "Diverse Image Generation via
Self-Conditioned GANs"): k-means clusters of the training images' pixels take the place of
class labels, so that a conditional GAN trains on images that have none.

- `kmeans`: the cluster of each training image, seeded (CLUSTER_SEED), so that the same images
  always give the same clusters.
- `sample_sequence`: the clusters n samples are drawn for, each cluster at its share of the
  training images, so that the samples are balanced as the data is.
- `save` / `load`: a run's clusters file (RUN/clusters.npz, gan.rundir.CLUSTERS), which resumes
  and sampling read: a resumed run trains on the very clusters it started with.

No TensorFlow here.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from gan.errors import UsageError

CLUSTER_SEED = 0  # k-means++'s initial centres: the clusters depend on the images only
MAX_ITERATIONS = 300
SAMPLE_SEED = 0  # the order of sample_sequence's clusters


def kmeans(images: np.ndarray, k: int, seed: int = CLUSTER_SEED) -> np.ndarray:
    """Cluster ids uint8 (N,) in 0..k-1 (k <= 256) of uint8 images (N, 28, 28): k-means on
    the pixels scaled to [0, 1], k-means++ initialisation from numpy.random.default_rng(seed),
    Lloyd's iterations until no image changes cluster (at most MAX_ITERATIONS). Every centre
    starts on an image; a centre left without images keeps its place (its cluster is empty
    and never sampled)."""
    if not 2 <= k <= min(256, len(images)):
        raise ValueError(f"k must be in 2..min(256, number of images), got {k}")
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    nearest = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):  # each next centre drawn with probability ~ squared distance
        total = nearest.sum()
        # identical images: no distance left to weigh by, any image will do
        p = nearest / total if total > 0 else None
        centre = x[rng.choice(len(x), p=p)]
        centres.append(centre)
        nearest = np.minimum(nearest, ((x - centre) ** 2).sum(axis=1))
    centres = np.stack(centres)
    assignment = None
    for _ in range(MAX_ITERATIONS):
        distances = (centres**2).sum(axis=1)[None] - 2 * x @ centres.T
        new = distances.argmin(axis=1)
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        for j in range(k):
            members = x[assignment == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return assignment.astype(np.uint8)


def sample_sequence(clusters: np.ndarray, k: int, n: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """The clusters of n samples, uint8 (n,): each of the k clusters as often as its share of
    `clusters` (the training images' ids, (N,) in 0..k-1), rounded down, the remainder to the
    largest fractions; in an order shuffled by `seed`."""
    shares = np.bincount(clusters, minlength=k) / len(clusters) * n
    counts = np.floor(shares).astype(int)
    counts[np.argsort(counts - shares)[: n - counts.sum()]] += 1  # the largest remainders
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), counts)).astype(np.uint8)


def save(path: Path, clusters: np.ndarray) -> None:
    """Writes the cluster ids (N,) to `path` (.npz, key 'clusters'), atomically: a kill leaves
    no half-written file."""
    from gan.rundir import write_atomically

    buffer = io.BytesIO()
    np.savez(buffer, clusters=np.asarray(clusters, np.uint8))
    write_atomically(Path(path), buffer.getvalue())


def load(path: Path, k: int, image_count: int | None = None) -> np.ndarray:
    """The cluster ids uint8 (N,) that `save` wrote. Raises UsageError (one line) if the file
    is missing, damaged, or holds ids outside 0..k-1 or (image_count given) not one per
    image."""
    try:
        with np.load(path) as kept:
            clusters = kept["clusters"]
    except FileNotFoundError:
        raise UsageError(f"{path} is missing: a --self-condition run keeps its clusters there")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(f"{path} cannot be read ({' '.join(str(error).split())})") from None
    if clusters.ndim != 1 or clusters.dtype != np.uint8 or (len(clusters) and clusters.max() >= k):
        raise UsageError(f"{path} does not hold cluster ids in 0..{k - 1}")
    if image_count is not None and len(clusters) != image_count:
        raise UsageError(
            f"{path} holds the clusters of {len(clusters)} images, not of the {image_count} "
            "training images"
        )
    return clusters
