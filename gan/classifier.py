"""The evaluation classifier: a small CNN trained on real images, cached on disk.

Its penultimate layer (`features`, 128 ReLU units) gives the features of the Fréchet distance;
its softmax gives p(y|x) for the classifier score and the class histogram. Training is seeded
in every layer and shuffles with its own generator, never the global random state, so it can
run in the middle of a GAN training run without changing that run.

Cache: a trained classifier is stored as CACHE_DIR/<key>.keras (and <key>.json, what it was
trained on and how long it took), where <key> hashes the training images, their labels and the
ClassifierSpec. CACHE_DIR is the caller's `cache_dir`, else $GAN_CACHE_DIR, else
$XDG_CACHE_HOME/gan/classifiers (~/.cache/gan/classifiers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import scipy.special
from keras import layers

from gan.data import to_float
from gan.errors import UsageError

NUM_CLASSES = 10
FEATURES_LAYER = "features"
CACHE_ENV = "GAN_CACHE_DIR"


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """How the classifier is built and trained. Part of the cache key: changing any field
    (or `version`, to be bumped whenever the network or its training changes) retrains."""

    epochs: int = 12  # its held-out accuracy: docs/evaluation.md
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    version: int = 1


class Classifier:
    """A trained classifier: uint8 images in, penultimate features and p(y|x) out."""

    def __init__(self, model: keras.Model):
        self.model = model
        self._features_and_logits = keras.Model(
            model.inputs, [model.get_layer(FEATURES_LAYER).output, model.outputs[0]]
        )

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, 28, 28) -> features float32 (N, 128) and probabilities float64 (N, 10)."""
        features, logits = self._features_and_logits.predict(
            to_float(images), batch_size=batch_size, verbose=0
        )
        return features, scipy.special.softmax(logits.astype(np.float64), axis=1)


def build_network(seed: int = 0) -> keras.Model:
    """(B, 28, 28, 1) in [-1, 1] -> (B, 10) class logits. Two conv/pool blocks, then the
    128-unit `features` layer (225,034 parameters)."""

    def init(offset):  # a distinct seed per layer: same-shaped layers must not start equal
        return keras.initializers.GlorotUniform(seed=seed + offset)

    inputs = keras.Input((28, 28, 1))
    hidden = layers.Conv2D(32, 3, activation="relu", kernel_initializer=init(1))(inputs)
    hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Conv2D(64, 3, activation="relu", kernel_initializer=init(2))(hidden)
    hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Dropout(0.25, seed=seed + 3)(layers.Flatten()(hidden))
    features = layers.Dense(
        128, activation="relu", kernel_initializer=init(4), name=FEATURES_LAYER
    )(hidden)
    hidden = layers.Dropout(0.5, seed=seed + 5)(features)
    logits = layers.Dense(NUM_CLASSES, kernel_initializer=init(6), name="logits")(hidden)
    return keras.Model(inputs, logits, name="classifier")


def train_network(images: np.ndarray, labels: np.ndarray, spec: ClassifierSpec) -> keras.Model:
    """Trains build_network(spec.seed) on uint8 images (N, 28, 28) with labels (N,) in 0-9,
    printing one line per epoch. Epoch e visits the images in the order of
    numpy.random.default_rng([seed, e]): reproducible, and no global random state is used."""
    model = build_network(spec.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    inputs = to_float(images)
    for epoch in range(spec.epochs):
        started = time.perf_counter()
        order = np.random.default_rng([spec.seed, epoch]).permutation(len(inputs))
        # One fit() per epoch on pre-shuffled arrays: Keras' own shuffling and PyDataset's
        # prefetching thread both make the batch order vary from run to run.
        history = model.fit(
            inputs[order], labels[order], batch_size=spec.batch_size, shuffle=False, verbose=0
        )
        metrics = {name: values[-1] for name, values in history.history.items()}
        print(
            f"Classifier epoch {epoch + 1}/{spec.epochs}: loss {metrics['loss']:.4f} "
            f"accuracy {metrics['accuracy']:.4f} ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    return model


def load_or_train(
    images: np.ndarray,
    labels: np.ndarray,
    spec: ClassifierSpec = ClassifierSpec(),
    cache_dir: str | Path | None = None,
) -> tuple[Classifier, dict]:
    """The classifier trained on these images and labels: from the cache if there, else
    trained now and cached. Returns it and a dict {"path", "cached", "train_seconds",
    "images", "spec"}. Raises UsageError if the cache directory cannot be created."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(images, labels, spec)
    path, info_path = directory / f"{key}.keras", directory / f"{key}.json"
    if info_path.exists():  # written last: its presence means the model file is complete
        try:
            info = json.loads(info_path.read_text())
            model = keras.models.load_model(path, compile=False)
            return Classifier(model), {"path": str(path), "cached": True, **info}
        except Exception as error:  # unreadable for any reason: a cache can always be rebuilt
            print(f"Cannot read the cached classifier {path} ({error}); retraining", flush=True)

    try:  # before training: a cache that cannot be written is an input error, found early
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the classifier cache {directory} ({error.strerror}); "
            f"choose another with --cache-dir or ${CACHE_ENV}"
        ) from None
    print(
        f"Training the evaluation classifier on {len(images)} real images (once: cached as {path})",
        flush=True,
    )
    started = time.perf_counter()
    model = train_network(images, labels, spec)
    info = {
        "train_seconds": round(time.perf_counter() - started, 1),
        "images": len(images),
        "spec": dataclasses.asdict(spec),
    }
    # Write under temporary names, then rename: a crash never leaves a half-written entry.
    temporary = directory / f".{key}.{os.getpid()}.keras"
    model.save(temporary)
    os.replace(temporary, path)
    temporary = temporary.with_suffix(".json")
    temporary.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(temporary, info_path)
    return Classifier(model), {"path": str(path), "cached": False, **info}


def cache_key(images: np.ndarray, labels: np.ndarray, spec: ClassifierSpec) -> str:
    """A hex digest of the images' and labels' contents (and shapes) and of the spec."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(images, np.uint8), np.ascontiguousarray(labels, np.uint8)):
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    digest.update(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    return digest.hexdigest()[:32]


def default_cache_dir() -> Path:
    """$GAN_CACHE_DIR, else $XDG_CACHE_HOME/gan/classifiers, else ~/.cache/gan/classifiers."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gan" / "classifiers"
