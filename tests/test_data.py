"""Reading idx / .gz / .npz / directories, scaling to [-1, 1], and the tf.data pipeline."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from conftest import SHARED_DATA, idx_bytes, make_images, write_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan import data
from gan.errors import UsageError


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_reads_raw_and_gzipped_idx(tmp_path, images, name):
    loaded = data.load_path(write_idx(tmp_path / name, images))
    assert loaded.dtype == np.uint8 and loaded.shape == (300, 28, 28)
    np.testing.assert_array_equal(loaded, images)


def test_directory_concatenates_image_files_in_name_order_and_skips_the_rest(tmp_path):
    first, second = make_images(5, seed=1), make_images(7, seed=2)
    write_idx(tmp_path / "b-images-idx3-ubyte", second)
    write_idx(tmp_path / "a-images-idx3-ubyte.gz", first)
    write_idx(tmp_path / "a-labels-idx1-ubyte.gz", np.arange(5))
    (tmp_path / "README.md").write_text("not an image file")
    loaded = data.load_path(tmp_path)
    np.testing.assert_array_equal(loaded, np.concatenate([first, second]))


def test_npz_in_keras_mnist_layout_uses_train_and_test(tmp_path):
    train, test = make_images(6, seed=1), make_images(4, seed=2)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=train, y_train=np.zeros(6), x_test=test, y_test=np.zeros(4))
    np.testing.assert_array_equal(data.load_path(path), np.concatenate([train, test]))


def test_npz_with_an_images_array(tmp_path):
    images = make_images(3)
    np.savez(tmp_path / "samples.npz", images=images[..., None])  # (N, 28, 28, 1) is fine
    np.testing.assert_array_equal(data.load_path(tmp_path / "samples.npz"), images)


def test_limit_takes_the_first_images(data_dir, images):
    np.testing.assert_array_equal(data.load("mnist", str(data_dir), limit=10), images[:10])


def _truncated_idx(directory):
    path = write_idx(directory / "x-idx3-ubyte", make_images(4))
    path.write_bytes(path.read_bytes()[:-10])
    return path


def _truncated_gz(directory):
    path = write_idx(directory / "x-idx3-ubyte.gz", make_images(40))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _npz(directory, **arrays):
    np.savez(directory / "x.npz", **arrays)
    return directory / "x.npz"


def _not_a_zip(directory):
    (directory / "x.npz").write_bytes(b"not a zip file")
    return directory / "x.npz"


BAD_INPUTS = {
    "empty-dir": (lambda d: d, "no idx image files"),
    "missing": (lambda d: d / "missing", "no such file"),
    "truncated-idx": (_truncated_idx, "truncated or corrupt"),
    "truncated-gz": (_truncated_gz, "corrupt or truncated gzip"),
    "npz-without-images": (lambda d: _npz(d, labels=np.zeros(3)), "no images"),
    "npz-not-28x28": (lambda d: _npz(d, images=np.zeros((3, 32, 32), np.uint8)), "expected"),
    "npz-corrupt": (_not_a_zip, "not a readable .npz"),
    "idx-not-28x28": (lambda d: write_idx(d / "x-idx3-ubyte", np.zeros((2, 32, 32))), "32x32"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_data_error_naming_the_problem(tmp_path, case):
    make_path, message = BAD_INPUTS[case]
    with pytest.raises(data.DataError, match=message):
        data.load_path(make_path(tmp_path))


def test_float_images_span_minus_one_to_one_and_round_trip_to_uint8():
    pixels = np.array([[0, 255] + [128] * 782], np.uint8).reshape(1, 28, 28)
    scaled = data.to_float(pixels)
    assert scaled.dtype == np.float32 and scaled.shape == (1, 28, 28, 1)
    assert scaled.min() == -1.0 and scaled.max() == 1.0
    np.testing.assert_array_equal(data.to_uint8(scaled), pixels)


def _epochs(images, batch_size, seed, epochs, first_epoch=0):
    """The dataset's batches as NumPy, grouped by epoch."""
    steps = len(images) // batch_size
    batches = [b.numpy() for b in data.make_dataset(images, batch_size, seed, epochs, first_epoch)]
    return [batches[i : i + steps] for i in range(0, len(batches), steps)]


def test_dataset_shuffles_each_epoch_drops_the_remainder_and_is_reproducible():
    # Image i is filled with the pixel value i, so a batch shows which images it holds.
    images = np.broadcast_to(np.arange(100, dtype=np.uint8)[:, None, None], (100, 28, 28))
    epochs = _epochs(images, batch_size=32, seed=7, epochs=3)
    assert len(epochs) == 3 and all(len(e) == 3 for e in epochs)  # 100 // 32, remainder dropped
    orders = []
    for batches in epochs:
        assert all(b.shape == (32, 28, 28, 1) and b.dtype == np.float32 for b in batches)
        np.testing.assert_array_equal(  # scaled to [-1, 1] exactly as to_float does
            np.concatenate(batches), data.to_float(data.to_uint8(np.concatenate(batches)))
        )
        order = data.to_uint8(np.concatenate(batches))[:, 0, 0]
        assert len(set(order)) == 96  # no image twice within an epoch
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    again = _epochs(images, 32, seed=7, epochs=3)
    np.testing.assert_array_equal(np.stack(again), np.stack(epochs))  # same seed, same batches
    restarted = _epochs(images, 32, seed=7, epochs=3, first_epoch=2)
    np.testing.assert_array_equal(restarted[0], epochs[2])  # epoch 2 alone = epoch 2 in sequence
    other_seed = _epochs(images, 32, seed=8, epochs=1)
    assert not np.array_equal(other_seed[0], epochs[0])


def test_labelled_dataset_pairs_every_image_with_its_own_label_in_the_same_order():
    # Image i is filled with the pixel value i and labelled 255 - i.
    images = np.broadcast_to(np.arange(100, dtype=np.uint8)[:, None, None], (100, 28, 28))
    labels = (255 - np.arange(100)).astype(np.uint8)
    plain = _epochs(images, batch_size=32, seed=7, epochs=2)
    pairs = list(data.make_dataset(images, 32, seed=7, epochs=2, labels=labels))
    assert len(pairs) == 6 and all(len(pair) == 2 for pair in pairs)
    batches = np.concatenate([batch.numpy() for batch, _ in pairs])
    np.testing.assert_array_equal(batches, np.concatenate(plain[0] + plain[1]))  # same order
    for batch, batch_labels in pairs:
        assert batch_labels.dtype == "int32" and batch_labels.shape == (32,)
        np.testing.assert_array_equal(batch_labels, 255 - data.to_uint8(batch)[:, 0, 0])


def test_limit_takes_the_first_labels_with_the_first_images(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", make_images(20))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(20) % 7)
    images, labels = data.load_labelled("mnist", str(tmp_path), limit=9)
    np.testing.assert_array_equal(images, data.load("mnist", str(tmp_path), limit=9))
    np.testing.assert_array_equal(labels, np.arange(9) % 7)


def test_labels_of_a_generated_npz_sit_beside_its_images(tmp_path):
    path = _npz(tmp_path, images=make_images(3), labels=np.array([4, 0, 9]))
    images, labels = data.load_labelled("mnist", str(path))
    assert images.shape == (3, 28, 28) and labels.tolist() == [4, 0, 9]
    assert data.read_labels(path).dtype == np.uint8


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="../shared/data/mnist absent")
def test_reads_the_real_mnist_test_set():
    images = data.load_path(SHARED_DATA / "mnist")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0


def test_labelled_directory_pairs_each_image_file_with_its_label_file(tmp_path):
    first, second = make_images(5, seed=1), make_images(7, seed=2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", second)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(7, 2))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", first)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5))
    images, labels = data.load_labelled("mnist", str(tmp_path))
    np.testing.assert_array_equal(images, data.load_path(tmp_path))  # the order load() uses
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, 4] + [2] * 7)
    assert labels.dtype == np.uint8
    images, labels = data.load_labelled("mnist", str(tmp_path), limit=3)
    assert len(images) == len(labels) == 3


def test_labelled_npz_uses_y_train_and_y_test(tmp_path):
    path = _npz(
        tmp_path, x_train=make_images(3), y_train=[7, 8, 9], x_test=make_images(2), y_test=[1, 2]
    )
    images, labels = data.load_labelled("mnist", str(path))
    assert images.shape == (5, 28, 28)
    np.testing.assert_array_equal(labels, [7, 8, 9, 1, 2])


def _images_without_labels(directory):
    write_idx(directory / "x-images-idx3-ubyte", make_images(3))
    return directory


def _fewer_labels_than_images(directory):
    write_idx(directory / "x-labels-idx1-ubyte", np.arange(2))
    return write_idx(directory / "x-images-idx3-ubyte", make_images(3))


def _labels_of_two_files_swapped(directory):
    """As many labels as images in all, but not file by file."""
    write_idx(directory / "a-images-idx3-ubyte", make_images(2))
    write_idx(directory / "a-labels-idx1-ubyte", np.arange(3))
    write_idx(directory / "b-images-idx3-ubyte", make_images(3))
    write_idx(directory / "b-labels-idx1-ubyte", np.arange(2))
    return directory


def _unlabelled_name(directory):
    return write_idx(directory / "digits.ubyte", make_images(3))


@pytest.mark.parametrize(
    "make_path, message",
    [
        (_images_without_labels, "x-images-idx3-ubyte: no label file x-labels-idx1-ubyte beside"),
        (lambda d: _npz(d, images=make_images(3)), r"no labels \(no array labels beside"),
        (lambda d: _npz(d, x_train=make_images(3)), r"no labels \(no array y_train beside"),
        (_fewer_labels_than_images, "3 images but 2 labels"),
        (_labels_of_two_files_swapped, "a-images-idx3-ubyte: 2 images but 3 labels in a-labels"),
        (_unlabelled_name, "no label file: its name has no 'images' to replace with 'labels'"),
    ],
)
def test_missing_or_mismatched_labels_raise_label_error_naming_what_was_looked_for(
    tmp_path, make_path, message
):
    with pytest.raises(data.LabelError, match=message):
        data.load_labelled("mnist", str(make_path(tmp_path)))
    assert issubclass(data.LabelError, data.DataError)


def test_truncated_label_file_raises_data_error(tmp_path):
    path = write_idx(tmp_path / "x-labels-idx1-ubyte", np.arange(10))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.read_idx_labels(path)


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="../shared/data/mnist absent")
def test_reads_the_real_mnist_labels():
    images, labels = data.load_labelled("mnist", str(SHARED_DATA / "mnist"))
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]  # MNIST test set counts


def test_data_errors_are_usage_errors_which_the_command_lines_report_in_one_line():
    assert issubclass(data.DataError, UsageError)


# The official MNIST test set (yann.lecun.com/exdb/mnist), as shipped in gan/mnist/.
BUNDLED_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def test_the_bundled_mnist_test_set_is_the_official_one_with_its_labels():
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.BUNDLED_MNIST.iterdir()
    }
    assert files == BUNDLED_SHA256
    images, labels = data.read_source("mnist", "bundled")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _no_keras_datasets(dataset):
    raise data.DataError(f"could not download {dataset} through keras.datasets (offline)")


def test_without_keras_datasets_mnist_comes_from_the_bundled_digits(monkeypatch):
    monkeypatch.setattr(data, "download_labelled", _no_keras_datasets)
    assert data.available_source("mnist") == "bundled"
    bundled = data.read_source("mnist", "bundled")
    np.testing.assert_array_equal(data.load("mnist", limit=7), bundled[0][:7])
    images, labels = data.load_labelled("mnist", limit=7)
    np.testing.assert_array_equal(labels, bundled[1][:7])
    with pytest.raises(data.DataError, match="could not download fashion_mnist"):
        data.available_source("fashion_mnist")


def test_an_explicit_source_is_used_or_refused_never_replaced(monkeypatch):
    monkeypatch.setattr(data, "download_labelled", _no_keras_datasets)
    with pytest.raises(data.DataError, match="could not download mnist"):
        data.load("mnist", source="keras")
    with pytest.raises(data.DataError, match="--source bundled holds MNIST digits only"):
        data.load("fashion_mnist", source="bundled")


# --- anything that is not a valid image file is refused, quickly and without traceback --------


def _fifo(directory):
    os.mkfifo(directory / "x-idx3-ubyte")  # opening it to read would wait for a writer forever
    return directory / "x-idx3-ubyte"


def _huge_sparse_file(directory):
    """5 GB that are not images: refused from the header, never read whole."""
    path = directory / "big-idx3-ubyte"
    with open(path, "wb") as file:
        file.write(struct.pack(">4B3I", 0, 0, 8, 3, 1000, 28, 28))
        file.truncate(5 * 2**30)
    return path


def _count_overflowing_32_bits(directory):
    """count * 28 * 28 wraps around 2**32 to the size of the data that is there (2 images)."""
    assert (2**32 // 16 + 2) * 784 % 2**32 == 2 * 784
    count = 2**32 // 16 + 2  # * 784 = 49 * 2**32 + 1568: wraps to 1568 in 32 bits
    header = struct.pack(">4B3I", 0, 0, 8, 3, count, 28, 28)
    path = directory / "crafted-idx3-ubyte"
    path.write_bytes(header + bytes(784 * 2))
    return path


def _gz_longer_than_promised(directory):
    path = directory / "x-idx3-ubyte.gz"
    payload = idx_bytes(make_images(2))
    path.write_bytes(gzip.compress(payload + bytes(784)))
    return path


LOADER_INPUTS = {
    "fifo": (_fifo, "not a regular file"),
    "device": (lambda d: Path("/dev/zero"), "not a regular file"),
    "huge-sparse": (_huge_sparse_file, "promises 1000 images (784000 bytes of data) but the"),
    "count-overflow": (_count_overflowing_32_bits, "truncated or corrupt"),
    "gz-too-long": (_gz_longer_than_promised, "promises 2 images (1568 bytes of data) but the "
                    "file has more"),
    "long-name": (lambda d: d / ("x" * 300), "File name too long"),
    "pixels-out-of-range": (
        lambda d: _npz(d, images=np.full((2, 28, 28), 300, np.int32)),
        "expected integer pixels 0-255, got values 300 to 300",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", LOADER_INPUTS)
def test_loaders_refuse_what_is_not_an_image_file_from_its_header(tmp_path, case):
    make_path, message = LOADER_INPUTS[case]
    with pytest.raises(data.DataError, match=re.escape(message)):
        data.load_path(make_path(tmp_path))


def test_an_unreadable_directory_is_a_data_error(tmp_path, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)  # root may read any directory
    with pytest.raises(data.DataError, match=r"--data .*: cannot read \(Permission denied\)"):
        data.load_path(tmp_path)


# --- property-based: every input loads valid images or raises DataError ---------------------

LOADER_ERRORS = (data.DataError,)


def _loads_or_refuses(path):
    try:
        images = data.load_path(path)
    except LOADER_ERRORS:
        return
    assert images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)


def _header(count, rows=28, cols=28, ndim=3, kind=8):
    return bytes([0, 0, kind, ndim]) + struct.pack(f">{ndim}I", count, rows, cols)[: 4 * ndim]


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(content=st.binary(max_size=64), gz=st.booleans())
def test_arbitrary_bytes_load_or_raise_data_error(tmp_path_factory, content, gz):
    path = tmp_path_factory.mktemp("bytes") / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(content) if gz else content)
    _loads_or_refuses(path)


@SETTINGS
@given(
    count=st.integers(0, 2**32 - 1),
    rows=st.sampled_from([28, 0, 1, 2**32 - 1]),
    cut=st.integers(0, 20),
    extra=st.integers(-800, 800),
    gz=st.booleans(),
)
def test_truncated_and_oversized_headers_load_or_raise_data_error(
    tmp_path_factory, count, rows, cut, extra, gz
):
    header = _header(count, rows)[: 16 - cut if cut <= 16 else 16]
    body = bytes(max(0, min(count, 3) * 784 + extra))
    content = header + body
    path = tmp_path_factory.mktemp("idx") / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(content) if gz else content)
    _loads_or_refuses(path)


ARRAYS = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.bool_, np.uint64]),
        shape=st.sampled_from([(0, 28, 28), (2, 28, 28), (2, 28, 28, 1), (2, 28), (3,), ()]),
    ),
    hnp.arrays(
        dtype=hnp.unicode_string_dtypes(max_len=3), shape=st.sampled_from([(2, 28, 28), (2,)])
    ),
)


@SETTINGS
@given(
    arrays=st.dictionaries(
        st.sampled_from(["x_train", "x_test", "images", "y_train", "other"]), ARRAYS, max_size=3
    )
)
def test_arbitrary_npz_contents_load_or_raise_data_error(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("npz") / "x.npz"
    np.savez(path, **arrays)
    _loads_or_refuses(path)
