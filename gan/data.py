"""Training images: read MNIST-style files, scale to [-1, 1], and batch them with tf.data.

Without local files, a data set comes from keras.datasets or, for mnist, from the official
MNIST test set shipped in gan/mnist/ (`read_source`; the default falls back to it offline).

Readers return uint8 arrays of shape (N, 28, 28), pixel values 0-255. Every problem with the
input (missing path, corrupt file, wrong shape, no network) raises DataError with a message
that says what to do. The readers need only NumPy; TensorFlow is imported by the functions
that need it.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from gan.config import steps_per_epoch
from gan.errors import UsageError

IMAGE_SHAPE = (28, 28)
_IDX_UBYTE = 0x08  # idx type code of unsigned bytes, the only type MNIST files use
# The official MNIST test set (t10k images and labels, 10,000 digits, 1.6 MB; MNIST is freely
# redistributable), shipped as package data so that the default run trains offline.
BUNDLED_MNIST = Path(__file__).with_name("mnist")


class DataError(UsageError):
    """The images cannot be loaded; the message names the file and what to do."""


class LabelError(DataError):
    """The images have no labels (or not one for each image); the message names what was
    looked for. Callers say what needed the labels (--conditional, evaluation)."""


def load(
    dataset: str, data: str | None = None, limit: int | None = None, source: str | None = None
) -> np.ndarray:
    """The training images: from `data` if given, else `dataset` from `source` (see
    `read_source`). Returns uint8 (N, 28, 28), the first `limit` images if `limit` is set.
    """
    images = load_path(data) if data is not None else read_source(dataset, source)[0]
    return images[:limit] if limit else images


def available_source(dataset: str) -> str:
    """Where `dataset` can be had from here: "keras" if keras.datasets gives it (from its cache,
    or by downloading it), else "bundled" for mnist. Raises DataError for another data set
    that keras.datasets cannot give."""
    try:
        download_labelled(dataset)
    except DataError:
        if dataset != "mnist":
            raise
        return "bundled"
    return "keras"


def read_source(dataset: str, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images of `dataset` and their labels, uint8 (N, 28, 28) and uint8 (N,), from
    `source`: "keras" is keras.datasets (train then test, 70,000 images), "bundled" the MNIST
    test set shipped in gan/mnist/ (10,000 digits, mnist only), None `available_source`'s.
    Raises DataError if the source cannot give the data set."""
    source = source or available_source(dataset)
    if source == "keras":
        return download_labelled(dataset)
    if dataset != "mnist":
        raise DataError(
            f"--source {source} holds MNIST digits only, not --dataset {dataset}; "
            f"use --source keras or --data PATH"
        )
    return load_path(BUNDLED_MNIST), read_labels(BUNDLED_MNIST)


def download_labelled(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (train then test) of a keras.datasets set and their class labels:
    uint8 (70000, 28, 28) and uint8 (70000,)."""
    import keras

    loaders = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}
    try:
        (x_train, y_train), (x_test, y_test) = loaders[dataset].load_data()
    except Exception as error:  # keras raises bare Exception on a failed download
        raise DataError(
            f"could not download {dataset} through keras.datasets ({_one_line(error)}); "
            f"pass local files with --data PATH"
            + (" or use the bundled digits with --source bundled" if dataset == "mnist" else "")
        ) from None
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]).astype(np.uint8)


def load_path(path: str | Path) -> np.ndarray:
    """Images from a directory of idx files, one idx file (raw or .gz), or an .npz file.
    Only directories and regular files are read (not a FIFO or a device)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"--data {path}: no such file or directory") from None
    except OSError as error:  # e.g. a name longer than the file system allows
        raise DataError(f"--data {path}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        return _read_directory(path)
    if path.suffix == ".npz":
        return read_npz(path)
    images = read_idx(path)
    if images is None:
        raise DataError(f"{path}: not an idx image file (expected an idx3-ubyte file or .npz)")
    return images


def read_idx(path: str | Path) -> np.ndarray | None:
    """Reads an idx file (gzip-compressed if its name ends in .gz).

    Returns uint8 (N, 28, 28) for an image file and None for a file that is not idx images
    (labels, other files). Raises DataError for a truncated or corrupt file, and for anything
    but a regular file. Reads the 16-byte header first and never more than one byte beyond
    what it promises, so an unrelated or crafted file is refused before it fills memory.
    """
    path = Path(path)
    read = _read_idx(path, ndim=3)
    if read is None:
        return None
    (count, rows, cols), pixels = read
    return np.frombuffer(pixels, dtype=np.uint8).reshape(count, rows, cols)


def read_npz(path: str | Path) -> np.ndarray:
    """Images from an .npz: keras' mnist.npz layout (x_train, x_test; both are used) or
    an `images` array (what gan.generate writes). Returns uint8 (N, 28, 28)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # zipfile, format and OS errors have no common base
        raise DataError(f"{path}: not a readable .npz file ({_one_line(error)})") from None
    keys = [k for k in ("x_train", "x_test") if k in arrays] or [
        k for k in ("images",) if k in arrays
    ]
    if not keys:
        raise DataError(
            f"{path}: no images; expected arrays x_train/x_test (keras' mnist.npz) or "
            f"images, found {', '.join(arrays) or 'no arrays'}"
        )
    images = np.concatenate([_as_uint8_images(arrays[k], f"{path}:{k}") for k in keys])
    return images


def load_labelled(
    dataset: str, data: str | None = None, limit: int | None = None, source: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images `load` returns, in the same order, with their class labels:
    uint8 (N, 28, 28) and uint8 (N,).

    Labels come from `read_source`, from an .npz's y_train/y_test (or `labels` beside
    `images`), or from the label file beside each idx image file (train-images-idx3-ubyte ->
    train-labels-idx1-ubyte, .gz or raw). Raises DataError for the images as `load` does, and
    LabelError when an image file has no label file or the counts differ.
    """
    if data is None:
        images, labels = read_source(dataset, source)
    else:
        images = load_path(data)  # every check of the images, exactly as for training
        labels = read_labels(data)
        if len(labels) != len(images):
            raise LabelError(f"--data {data}: {len(images)} images but {len(labels)} labels")
    # --limit takes the first images: the same slice of the labels keeps each with its own.
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Reads an idx1-ubyte label file (gzip-compressed if its name ends in .gz): uint8 (N,).
    Checks the header and the size as read_idx does."""
    path = Path(path)
    read = _read_idx(path, ndim=1)
    if read is None:
        raise DataError(f"{path}: not an idx label file (expected an idx1-ubyte file)")
    return np.frombuffer(read[1], dtype=np.uint8)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) pixels 0-255 -> float32 (N, 28, 28, 1) in [-1, 1]."""
    scaled = images.astype(np.float32)[..., None]
    scaled -= 127.5  # in place: a 60,000-image set is 188 MB as float32
    scaled /= 127.5
    return scaled


def to_uint8(images) -> np.ndarray:
    """float (N, 28, 28[, 1]) in [-1, 1] -> uint8 (N, 28, 28), 0-255 (values outside clip)."""
    images = np.asarray(images, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)
    return np.clip(np.rint(images * 127.5 + 127.5), 0, 255).astype(np.uint8)


def make_dataset(
    images: np.ndarray, batch_size: int, seed: int, epochs: int, first_epoch=0, labels=None
):
    """A tf.data.Dataset of shuffled batches for epochs first_epoch..epochs-1, back to back.

    images: uint8 (N, 28, 28), kept resident as one tensor (a quarter of its float32 size);
    each batch is gathered and scaled on the fly. Yields float32 (batch_size, 28, 28, 1) in
    [-1, 1], steps_per_epoch(N, batch_size) batches per epoch (N // batch_size: the
    remainder is dropped, so the step never sees a new shape and never retraces). Epoch e's
    order is a stateless shuffle seeded by (seed, e): it does not depend on what ran before,
    so a run restarted at epoch e sees the same batches.
    labels: None, or (N,) class labels: then each batch is a pair (images, int32
    (batch_size,) labels), the labels gathered with the same indices as their images. The
    order of the images is the same with and without labels.
    """
    import tensorflow as tf

    if labels is not None:
        labels = tf.constant(labels, tf.int32)
    images = tf.constant(images, tf.uint8)
    count = int(images.shape[0])
    steps = steps_per_epoch(count, batch_size)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[: steps * batch_size], (steps, batch_size))
        )

    def scaled_batch(indices):
        pixels = tf.cast(tf.gather(images, indices), tf.float32)[..., None]
        scaled = (pixels - 127.5) / 127.5  # as to_float
        return scaled if labels is None else (scaled, tf.gather(labels, indices))

    return (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(epoch_batches)
        .map(scaled_batch)
        .prefetch(tf.data.AUTOTUNE)
    )


def _read_directory(directory: Path) -> np.ndarray:
    try:
        files = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError as error:
        raise DataError(f"--data {directory}: cannot read ({error.strerror or error})") from None
    parts = [images for images in map(read_idx, files) if images is not None]
    if not parts:
        names = ", ".join(p.name for p in files[:5]) or "it is empty"
        raise DataError(
            f"--data {directory}: no idx image files in the directory ({names}); point --data "
            f"at a directory holding e.g. train-images-idx3-ubyte.gz"
        )
    return np.concatenate(parts)


def read_labels(path: str | Path) -> np.ndarray:
    """The labels of the images `load_path(path)` returns, in the same order: an .npz's
    y_train/y_test (beside x_train/x_test) or `labels` (beside `images`, as gan.generate
    writes for a conditional run), or each idx image file's label file, whose count must be
    the image file's. Returns uint8 (N,). Raises LabelError naming what was looked for."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = [k for k in ("y_train", "y_test") if f"x{k[1:]}" in archive.files]
            if not keys and "images" in archive.files:
                keys = ["labels"]
            missing = [k for k in keys if k not in archive.files]
            if missing or not keys:
                raise LabelError(
                    f"{path}: no labels (no array {', '.join(missing or ['y_train', 'y_test'])} "
                    f"beside the images)"
                )
            return np.concatenate([archive[k] for k in keys]).astype(np.uint8)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    labels = []
    for image_file in files:
        images = read_idx(image_file)
        if images is None:
            continue
        label_file = _label_file(image_file)
        labels.append(read_idx_labels(label_file))
        if len(labels[-1]) != len(images):
            raise LabelError(
                f"{image_file}: {len(images)} images but {len(labels[-1])} labels in "
                f"{label_file.name}"
            )
    return np.concatenate(labels)


def _label_file(image_file: Path) -> Path:
    """MNIST's naming: train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz."""
    name = image_file.name.replace("images", "labels").replace("idx3", "idx1")
    label_file = image_file.with_name(name)
    if name == image_file.name:
        raise LabelError(
            f"{image_file}: no label file: its name has no 'images' to replace with 'labels' "
            f"(MNIST's naming: t10k-images-idx3-ubyte beside t10k-labels-idx1-ubyte)"
        )
    if not label_file.exists():
        raise LabelError(f"{image_file}: no label file {name} beside it")
    return label_file


_ITEMS = {1: "labels", 3: "images"}  # what an idx file of ndim dimensions holds


def _read_idx(path: Path, ndim: int) -> tuple[tuple[int, ...], bytes] | None:
    """(dimensions, data) of an idx file of unsigned bytes with `ndim` dimensions (images: 28x28
    only), or None if its magic number says it is something else. Raises DataError."""
    header_size = 4 + 4 * ndim
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise DataError(f"{path}: not a regular file")
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as file:
            header = file.read(header_size)
            if header[:4] != bytes([0, 0, _IDX_UBYTE, ndim]):
                return None
            if len(header) < header_size:
                raise DataError(f"{path}: truncated idx header; download the file again")
            dims = struct.unpack(f">{ndim}I", header[4:])
            if ndim == 3 and dims[1:] != IMAGE_SHAPE:
                raise DataError(f"{path}: images are {dims[1]}x{dims[2]}; the networks need 28x28")
            expected = math.prod(dims)  # Python integers: no overflow
            if path.suffix == ".gz":
                data = _read_at_most(file, expected + 1)  # stops once there is more than promised
                found = len(data)
            else:
                found = os.fstat(file.fileno()).st_size - header_size  # before reading anything
                data = file.read() if found == expected else b""
            if found != expected:
                raise DataError(
                    f"{path}: idx header promises {dims[0]} {_ITEMS[ndim]} ({expected} bytes of "
                    f"data) but the file has {'more' if found > expected else found}; the file "
                    f"is truncated or corrupt, download it again"
                )
            return dims, data
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(
            f"{path}: corrupt or truncated gzip file ({_one_line(error)}); download it again"
        ) from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def _read_at_most(file, limit: int, chunk: int = 1 << 20) -> bytes:
    """The rest of `file`, or its next `limit` bytes if it has more; memory grows only with
    what is actually read."""
    parts, total = [], 0
    while total < limit and (part := file.read(min(chunk, limit - total))):
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _as_uint8_images(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{name}: images have shape {array.shape}; expected (N, 28, 28)")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name}: expected integer pixels 0-255, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(
            f"{name}: expected integer pixels 0-255, got values {array.min()} to {array.max()}"
        )
    return array.astype(np.uint8)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
