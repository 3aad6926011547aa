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
import zlib
from pathlib import Path

import numpy as np

from gan.errors import UsageError

IMAGE_SHAPE = (28, 28)
_IDX_UBYTE = 0x08  # idx type code of unsigned bytes, the only type MNIST files use
# The official MNIST test set (t10k images and labels, 10,000 digits, 1.6 MB; MNIST is freely
# redistributable), shipped as package data so that the default run trains offline.
BUNDLED_MNIST = Path(__file__).with_name("mnist")


class DataError(UsageError):
    """The images cannot be loaded; the message names the file and what to do."""


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
    return load_path(BUNDLED_MNIST), _labels_for(BUNDLED_MNIST)


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
    """Images from a directory of idx files, one idx file (raw or .gz), or an .npz file."""
    path = Path(path)
    if path.is_dir():
        return _read_directory(path)
    if not path.exists():
        raise DataError(f"--data {path}: no such file or directory")
    if path.suffix == ".npz":
        return read_npz(path)
    images = read_idx(path)
    if images is None:
        raise DataError(f"{path}: not an idx image file (expected an idx3-ubyte file or .npz)")
    return images


def read_idx(path: str | Path) -> np.ndarray | None:
    """Reads an idx file (gzip-compressed if its name ends in .gz).

    Returns uint8 (N, 28, 28) for an image file and None for a file that is not idx images
    (labels, other files). Raises DataError for a truncated or corrupt file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] != 3:
        return None
    header_size = 4 + 4 * 3
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated idx header; download the file again")
    count, rows, cols = np.frombuffer(raw, dtype=">u4", count=3, offset=4)
    if (rows, cols) != IMAGE_SHAPE:
        raise DataError(f"{path}: images are {rows}x{cols}; the networks need 28x28")
    expected = header_size + int(count) * rows * cols
    if len(raw) != expected:
        raise DataError(
            f"{path}: idx header promises {count} images ({expected} bytes) but the file has "
            f"{len(raw)} bytes; the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(-1, rows, cols)


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

    Labels come from `read_source`, from an .npz's y_train/y_test, or from the label file
    beside each idx image file (train-images-idx3-ubyte -> train-labels-idx1-ubyte, .gz or
    raw). Raises DataError when an image file has no label file or the counts differ.
    """
    if data is None:
        images, labels = read_source(dataset, source)
    else:
        images = load_path(data)  # every check of the images, exactly as for training
        labels = _labels_for(Path(data))
        if len(labels) != len(images):
            raise DataError(f"--data {data}: {len(images)} images but {len(labels)} labels")
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Reads an idx1-ubyte label file (gzip-compressed if its name ends in .gz): uint8 (N,)."""
    path = Path(path)
    raw = _read_bytes(path)
    if raw[:4] != bytes([0, 0, _IDX_UBYTE, 1]) or len(raw) < 8:
        raise DataError(f"{path}: not an idx label file (expected an idx1-ubyte file)")
    count = int(np.frombuffer(raw, dtype=">u4", count=1, offset=4)[0])
    if len(raw) != 8 + count:
        raise DataError(
            f"{path}: idx header promises {count} labels but the file is truncated "
            f"or corrupt; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=8)


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


def make_dataset(images: np.ndarray, batch_size: int, seed: int, epochs: int, first_epoch=0):
    """A tf.data.Dataset of shuffled batches for epochs first_epoch..epochs-1, back to back.

    images: uint8 (N, 28, 28), kept resident as one tensor (a quarter of its float32 size);
    each batch is gathered and scaled on the fly. Yields float32 (batch_size, 28, 28, 1) in
    [-1, 1], N // batch_size batches per epoch (the remainder is dropped, so the step never
    sees a new shape and never retraces). Epoch e's order is a stateless shuffle seeded by
    (seed, e): it does not depend on what ran before, so a run restarted at epoch e sees the
    same batches.
    """
    import tensorflow as tf

    images = tf.constant(images, tf.uint8)
    count = int(images.shape[0])
    steps = count // batch_size

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[: steps * batch_size], (steps, batch_size))
        )

    def scaled_batch(indices):
        pixels = tf.cast(tf.gather(images, indices), tf.float32)[..., None]
        return (pixels - 127.5) / 127.5  # as to_float

    return (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(epoch_batches)
        .map(scaled_batch)
        .prefetch(tf.data.AUTOTUNE)
    )


def _read_directory(directory: Path) -> np.ndarray:
    files = sorted(p for p in directory.iterdir() if p.is_file())
    parts = [images for images in map(read_idx, files) if images is not None]
    if not parts:
        names = ", ".join(p.name for p in files[:5]) or "it is empty"
        raise DataError(
            f"--data {directory}: no idx image files in the directory ({names}); point --data "
            f"at a directory holding e.g. train-images-idx3-ubyte.gz"
        )
    return np.concatenate(parts)


def _labels_for(path: Path) -> np.ndarray:
    """The labels of the images `load_path(path)` returns, in the same order."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = [k for k in ("y_train", "y_test") if k in archive.files]
            if not keys:
                raise DataError(
                    f"{path}: no labels (arrays y_train/y_test); evaluation needs labelled "
                    f"real images"
                )
            return np.concatenate([archive[k] for k in keys]).astype(np.uint8)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    label_files = [_label_file(p) for p in files if read_idx(p) is not None]
    return np.concatenate([read_idx_labels(p) for p in label_files])


def _label_file(image_file: Path) -> Path:
    """MNIST's naming: train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz."""
    name = image_file.name.replace("images", "labels").replace("idx3", "idx1")
    label_file = image_file.with_name(name)
    if name == image_file.name or not label_file.exists():
        raise DataError(
            f"{image_file}: no label file {name} beside it; evaluation needs labelled real "
            f"images (MNIST's *-labels-idx1-ubyte files)"
        )
    return label_file


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                return file.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(
            f"{path}: corrupt or truncated gzip file ({_one_line(error)}); download it again"
        ) from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def _as_uint8_images(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{name}: images have shape {array.shape}; expected (N, 28, 28)")
    if (
        not np.issubdtype(array.dtype, np.integer)
        or array.min(initial=0) < 0
        or array.max(initial=0) > 255
    ):
        raise DataError(f"{name}: expected integer pixels 0-255, got {array.dtype}")
    return array.astype(np.uint8)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
