"""gan.clusters: k-means clusters of the training images (--self-condition), drawn at their
shares, and the run directory's clusters file."""

from __future__ import annotations

import numpy as np
import pytest

from gan import clusters
from gan.clusters import kmeans, sample_sequence
from gan.errors import UsageError


def three_kinds(per_kind: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (3 * per_kind, 28, 28) images of three kinds (a square top left, a square bottom
    right, black), each with faint noise, in a shuffled order; and the kind of each."""
    rng = np.random.default_rng(1)
    kinds = rng.permutation(np.repeat(np.arange(3), per_kind))
    images = rng.integers(0, 20, size=(len(kinds), 28, 28)).astype(np.uint8)
    images[kinds == 0, 2:12, 2:12] = 255
    images[kinds == 1, 16:26, 16:26] = 255
    return images, kinds


def test_kmeans_finds_well_separated_kinds_and_is_seeded():
    images, kinds = three_kinds(40)
    ids = kmeans(images, 3)
    assert ids.shape == (120,) and ids.dtype == np.uint8 and set(ids) == {0, 1, 2}
    for kind in range(3):  # each kind is exactly one cluster
        assert len(set(ids[kinds == kind])) == 1
    np.testing.assert_array_equal(kmeans(images, 3), ids)


def test_kmeans_of_identical_images_puts_them_in_one_cluster():
    ids = kmeans(np.full((10, 28, 28), 7, np.uint8), 3)
    assert len(set(ids)) == 1


@pytest.mark.parametrize("k", [1, 257, 11])
def test_kmeans_refuses_a_cluster_count_it_cannot_fill(k):
    with pytest.raises(ValueError, match="k must be in"):
        kmeans(np.zeros((10, 28, 28), np.uint8), k)


def test_samples_draw_each_cluster_at_its_share():
    ids = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert np.bincount(sample_sequence(ids, 3, 10)).tolist() == [5, 3, 2]
    uneven = sample_sequence(np.array([0, 0, 1]), 2, 100)  # shares 66.7 and 33.3
    assert len(uneven) == 100 and np.bincount(uneven).tolist() == [67, 33]
    # an empty cluster (k-means can leave one) is never drawn
    assert np.bincount(sample_sequence(np.array([0, 2, 2, 2]), 4, 8), minlength=4).tolist() == [
        2,
        0,
        6,
        0,
    ]
    long = sample_sequence(ids, 3, 1000)
    assert long.dtype == np.uint8
    assert not np.array_equal(long, np.sort(long))  # shuffled ...
    np.testing.assert_array_equal(sample_sequence(ids, 3, 1000), long)  # ... by a seed


def test_a_clusters_file_reads_back_what_was_saved(tmp_path):
    ids = np.array([0, 3, 1, 3], np.uint8)
    clusters.save(tmp_path / "clusters.npz", ids)
    np.testing.assert_array_equal(clusters.load(tmp_path / "clusters.npz", 4, 4), ids)
    assert not list(tmp_path.glob(".partial-*"))  # written atomically, nothing left over


@pytest.mark.parametrize(
    "content,k,count,message",
    [
        (None, 4, None, "is missing"),
        (b"PK\x03\x04 cut short", 4, None, "cannot be read"),
        (np.array([0, 4], np.uint8), 4, None, r"does not hold cluster ids in 0\.\.3"),
        (np.array([0.5, 1.0]), 4, None, "does not hold cluster ids"),
        (np.array([0, 1, 2], np.uint8), 4, 5, "the clusters of 3 images, not of the 5"),
    ],
)
def test_a_bad_clusters_file_is_refused_in_one_line(tmp_path, content, k, count, message):
    path = tmp_path / "clusters.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.savez(path, clusters=content)
    with pytest.raises(UsageError, match=message) as error:
        clusters.load(path, k, count)
    assert "\n" not in str(error.value)
