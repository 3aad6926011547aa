"""Samples of a trained generator: where it comes from (`GeneratorSource`: a run directory, one
of its checkpoints, or a bare .keras file) and drawing images from it (`generate`,
`generate_with_labels`). The library under gan.generate's and gan.evaluate's command lines and
training's evaluations (--eval-every).

Noise is z ~ N(0, I) drawn with numpy.random.default_rng(seed) (draw_noise; optionally
truncated), so a seed always gives the same images, and the first k images do not depend on
how many are drawn. A conditional generator's images get their classes in turn
(label_sequence); a --self-condition run's its clusters, each at its share of the training
images (GeneratorSource.default_labels: which depends on how many are drawn).

Checkpoints are those gan.checkpoints writes: RUN/checkpoints/ckpt-E holds the training state
after E epochs, among it `generator`, the list of the generator's variables. A checkpoint
source restores one into a generator built from the run's config.json: `latest` is the
newest one that can be read (newer damaged ones are skipped with a warning).
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan import checkpoints, rundir
from gan.errors import UsageError


@dataclass(frozen=True)
class GeneratorSource:
    """Where a generator comes from: a run directory (optionally one of its checkpoints) or a
    bare .keras file. `epoch` is the training epoch it was saved after, when known."""

    path: Path  # the .keras file or the checkpoint prefix that is loaded
    run_dir: Path | None = None
    checkpoint: bool = False
    epoch: int | None = None

    @classmethod
    def resolve(cls, run=None, generator=None, checkpoint=None) -> GeneratorSource:
        """Checks that the files exist (raises UsageError naming the flag) and returns where
        the generator will be loaded from. Exactly one of run / generator."""
        if (run is None) == (generator is None):
            raise UsageError("give exactly one of --run RUN_DIR and --generator FILE.keras")
        if generator is not None:
            if checkpoint is not None:
                raise UsageError("--checkpoint needs --run (checkpoints live in a run directory)")
            path = Path(generator)
            if not path.is_file() or path.suffix != ".keras":
                raise UsageError(f"--generator {path}: not a .keras file")
            return cls(path)
        run_dir = Path(run)
        if not (run_dir / rundir.CONFIG).is_file():
            raise UsageError(f"--run {run_dir}: not a run directory (it has no config.json)")
        if checkpoint is not None:
            prefix = _checkpoint_prefix(run_dir, checkpoint)
            number = re.search(r"-(\d+)$", prefix.name)
            return cls(prefix, run_dir, True, int(number.group(1)) if number else None)
        path = run_dir / rundir.GENERATOR
        if not path.is_file():
            raise UsageError(
                f"--run {run_dir}: no generator.keras (training did not finish?); "
                f"pick a saved epoch with --checkpoint latest"
            )
        return cls(path, run_dir, False, rundir.read_config(run_dir).epochs)

    def num_classes(self) -> int | None:
        """The classes of a conditional run's generator (a --self-condition run's clusters),
        from the run's config.json (no TensorFlow); None for an unconditional run, or for a
        bare .keras file (unknown until it is loaded: see gan.models.generator_inputs)."""
        return rundir.read_config(self.run_dir).classes if self.run_dir is not None else None

    @property
    def self_conditioned(self) -> bool:
        """Whether the generator is a --self-condition run's: its classes are clusters, not
        the data set's classes. A bare .keras file does not say: False."""
        return bool(self._cluster_count())

    def _cluster_count(self) -> int:
        """A --self-condition run's K, from its config.json; 0 otherwise (a bare file: 0)."""
        return rundir.read_config(self.run_dir).self_condition if self.run_dir is not None else 0

    def default_labels(self, n: int) -> np.ndarray | None:
        """The classes n samples are drawn for when none are asked for: a --self-condition
        run's clusters, each at its share of the training images (gan.clusters.sample_sequence,
        from RUN/clusters.npz); None otherwise (a conditional generator's every class in
        turn, see label_sequence). Raises UsageError for a missing or damaged clusters file."""
        from gan import clusters

        count = self._cluster_count()
        if not count:
            return None
        ids = clusters.load(self.run_dir / rundir.CLUSTERS, count)
        return clusters.sample_sequence(ids, count, n)

    def load(self):
        """The generator as a keras.Model: (B, noise_dim) -> (B, 28, 28, 1) in [-1, 1], or
        for a conditional run [(B, noise_dim), labels (B,)] -> the same."""
        from gan.models import generator_inputs

        generator = self._restore() if self.checkpoint else self._load_keras_file()
        try:
            generator_inputs(generator)
            ok = np.prod(generator.output_shape[1:]) == 28 * 28
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(
                f"{self.path}: not a generator (it maps {generator.input_shape} to "
                f"{generator.output_shape}, not noise (and labels) to 28x28 images)"
            )
        return generator

    def samples(self, generator, n: int, seed: int = 0, truncation: float | None = None):
        """n images of `generator` (this source's, loaded) as gan.evaluate --run draws them,
        and the classes to score them with: a conditional generator's samples take every
        class in turn and are scored with them; a --self-condition run's take its clusters
        at their shares (default_labels) and are scored as an unconditional generator's
        (None), as are an unconditional one's. Raises UsageError as default_labels does."""
        return scored_samples(generator, n, seed, self.default_labels(n), truncation)

    def _load_keras_file(self):
        import keras

        try:  # a .keras file is a zip archive: say so when it is cut short or damaged
            with zipfile.ZipFile(self.path) as archive:
                bad = archive.testzip()
            problem = None if bad is None else f"{bad} fails its checksum"
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            problem = _one_line(error)
        if problem is not None:
            raise UsageError(
                f"{self.path}: not a complete .keras file ({problem}); it is truncated or "
                f"corrupt, save or copy it again"
            )
        try:
            return keras.models.load_model(self.path, compile=False)
        except Exception as error:  # keras raises many types for unreadable files
            raise UsageError(f"{self.path}: cannot load the model ({_one_line(error)})") from None

    def _restore(self):
        import tensorflow as tf

        from gan.models import generator_for

        config = rundir.read_config(self.run_dir)
        generator = generator_for(config)
        # gan.checkpoints stores each network as the list of its variables, in order; with
        # --ema the samples come from the generator's moving average.
        key = checkpoints.sampler_key(config)
        checkpoint = tf.train.Checkpoint(**{key: list(generator.variables)})
        try:
            status = checkpoint.read(str(self.path))
            status.assert_existing_objects_matched()  # every generator variable was restored
        except AssertionError:
            raise UsageError(
                f"--checkpoint {self.path}: holds no `{key}` (see gan.checkpoints)"
            ) from None
        except Exception as error:  # damaged files, or networks of another --arch/--noise-dim
            raise UsageError(
                f"--checkpoint {self.path}: cannot restore the generator of --arch {config.arch} "
                f"--noise-dim {config.noise_dim} from it ({_one_line(error)})"
            ) from None
        status.expect_partial()  # the discriminator, optimizers and counters are not needed
        return generator

    def describe(self) -> str:
        return str(self.path) + (f" (epoch {self.epoch})" if self.epoch else "")


def generate(
    generator,
    n: int,
    seed: int = 0,
    batch_size: int = 1000,
    labels=None,
    truncation: float | None = None,
) -> np.ndarray:
    """n images from `generator`: uint8 (n, 28, 28), 0-255. The noise is the first n rows of
    numpy.random.default_rng(seed).standard_normal (see draw_noise()), so a seed gives the same
    images every time and the first k images do not depend on n. labels (conditional
    generators only): a class, or classes that image i takes in turn (see label_sequence);
    None: every class in turn. truncation: draw the noise from N(0, 1) truncated to
    [-truncation, truncation] (the truncation trick: typical images, less variety). Raises
    UsageError for labels an unconditional generator is given, or outside its classes."""
    return generate_with_labels(generator, n, seed, labels, batch_size, truncation)[0]


def generate_with_labels(
    generator,
    n: int,
    seed: int = 0,
    labels=None,
    batch_size: int = 1000,
    truncation: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """generate(), and the labels the images were generated for: uint8 (n,), None for an
    unconditional generator."""
    from gan.data import to_uint8
    from gan.models import generator_inputs, with_labels

    noise_dim, num_classes = generator_inputs(generator)
    if num_classes is None and labels is not None:
        raise UsageError("the generator is not conditional: it takes no labels")
    noise = draw_noise(n, noise_dim, seed, truncation)
    classes = None if num_classes is None else label_sequence(labels, n, num_classes)
    batches = []
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        batch_labels = None if classes is None else classes[rows].astype(np.int32)
        images = generator(with_labels(noise[rows], batch_labels), training=False)
        batches.append(to_uint8(images))
    return np.concatenate(batches), classes


def scored_samples(
    generator, n: int, seed: int = 0, clusters=None, truncation: float | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """n images as gan.evaluate scores them, and the classes to score them with. clusters:
    a --self-condition generator's clusters to draw (uint8 (n,), see
    GeneratorSource.default_labels); its samples are scored as an unconditional generator's
    (None), since clusters are not classes. Without clusters: generate_with_labels (a
    conditional generator's classes in turn, scored with them)."""
    images, labels = generate_with_labels(generator, n, seed, clusters, truncation=truncation)
    return images, None if clusters is not None else labels


def draw_noise(n: int, noise_dim: int, seed: int, truncation: float | None = None) -> np.ndarray:
    """float32 (n, noise_dim): z ~ N(0, I) from numpy.random.default_rng(seed), row by row, so
    the first k rows do not depend on n. truncation: each entry from N(0, 1) restricted to
    [-truncation, truncation], by the inverse CDF of uniform draws (also row by row)."""
    rng = np.random.default_rng(seed)
    if truncation is None:
        return rng.standard_normal((n, noise_dim), dtype=np.float32)
    if not truncation > 0:
        raise UsageError(f"truncation must be > 0, got {truncation}")
    from scipy.special import ndtr, ndtri

    low = ndtr(-truncation)  # the standard normal's CDF at -truncation
    uniform = rng.random((n, noise_dim))
    noise = ndtri(low + uniform * (1 - 2 * low)).astype(np.float32)
    return np.clip(noise, -truncation, truncation)  # float32 rounding at the bounds


def label_sequence(labels, n: int, num_classes: int) -> np.ndarray:
    """The labels of n conditional samples, uint8 (n,): image i gets labels[i % len(labels)]
    for a sequence of classes, `labels` itself for one class (an int), and i % num_classes
    for None (every class equally often; with 10 classes in a 10-column grid, column k is
    class k). Raises UsageError for a class outside 0..num_classes-1."""
    if labels is None:
        labels = range(num_classes)
    classes = np.atleast_1d(np.asarray(labels, dtype=np.int64))
    if classes.ndim != 1 or len(classes) == 0:
        raise UsageError("labels must be one class or a non-empty list of classes")
    outside = sorted({int(c) for c in classes if not 0 <= c < num_classes})
    if outside:
        raise UsageError(
            f"class {', '.join(map(str, outside))} is not one of the generator's "
            f"{num_classes} classes (0-{num_classes - 1})"
        )
    return np.resize(classes, n).astype(np.uint8)  # repeats the classes to length n


def check_memory(count: int, noise_dim: int, grid_pixels: int = 0) -> None:
    """Refuses (UsageError, with the estimate) to draw `count` images, and to make a grid
    of `grid_pixels` pixels, when the arrays that takes would not fit in the memory available
    now: the noise (float32), the images (uint8, twice while they are joined) and the grid
    (twice while it is scaled)."""
    needed = count * (4 * noise_dim + 2 * 28 * 28) + 2 * grid_pixels
    available = _available_memory()
    if needed > available:
        raise UsageError(
            f"{count} images{' and the grid' if grid_pixels else ''} need about "
            f"{needed / 2**30:.1f} GiB of memory, more than the {available / 2**30:.1f} GiB "
            f"available; ask for fewer (--n, --rows, --cols, --scale)"
        )


def _available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable)."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def _checkpoint_prefix(run_dir: Path, checkpoint: str) -> Path:
    import tensorflow as tf

    directory = run_dir / rundir.CHECKPOINTS
    if checkpoint == "latest":
        try:
            latest, skipped = checkpoints.newest_readable(directory)
        except checkpoints.CheckpointError as error:
            raise UsageError(f"--checkpoint latest: {error}") from None
        if latest is None:
            raise UsageError(f"--checkpoint latest: no checkpoints in {directory}")
        for line in skipped:
            print(f"warning: {line}", file=sys.stderr)
        return Path(latest)
    prefix = (
        directory / f"{checkpoints.PREFIX}-{checkpoint}"
        if checkpoint.isdigit()
        else Path(checkpoint)
    )
    if not Path(f"{prefix}.index").is_file():
        state = tf.train.get_checkpoint_state(str(directory)) if directory.is_dir() else None
        saved = [Path(p).name for p in state.all_model_checkpoint_paths] if state else []
        raise UsageError(
            f"--checkpoint {checkpoint}: no checkpoint {prefix} "
            f"(saved: {', '.join(saved) or f'none in {directory}'})"
        )
    return prefix
