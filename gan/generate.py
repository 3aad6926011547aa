"""Draw samples from a trained generator: `python -m gan.generate --run logs/NAME --n 10000
--out samples.npz` (see --help); of a conditional run (--conditional), of chosen classes:
`--label 7`, `--label 0-9`, `--label 1,3,5` (image i gets the list's label i mod its length;
without --label every class in turn, label i mod num_classes), saved beside the images in the
.npz as `labels`.

The generator comes from a run directory (its generator.keras, or with --checkpoint one of
the checkpoints under checkpoints/) or from a bare saved model (--generator path.keras).
Noise is z ~ N(0, I) drawn with numpy.random.default_rng(seed), so a seed always gives the
same images, and the first k images do not depend on how many are drawn. Given without a
file, --out and --png write into RUN_DIR/generated/, numbered rather than overwriting a file.

Checkpoints are those gan.checkpoints writes: RUN/checkpoints/ckpt-E holds the training state
after E epochs, among it `generator`, the list of the generator's variables. `--checkpoint E`
restores ckpt-E into a generator built from the run's config.json, `--checkpoint latest` the
newest one that can be read (newer damaged ones are skipped with a warning), `--checkpoint
PATH` any checkpoint prefix (PATH.index must exist).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan import checkpoints, cli, rundir
from gan.cli import Parser, add_verbose_argument, whole_number
from gan.config import MAX_CLASSES, Config
from gan.errors import UsageError

PROG = "python -m gan.generate"
MAX_CLASS = MAX_CLASSES - 1  # labels are uint8


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
        return cls(path, run_dir, False, run_config(run_dir).epochs)

    def num_classes(self) -> int | None:
        """The classes of a conditional run's generator, from the run's config.json (no
        TensorFlow); None for an unconditional run, or for a bare .keras file (unknown
        until it is loaded: see gan.models.generator_inputs)."""
        return run_config(self.run_dir).num_classes if self.run_dir is not None else None

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

        config = run_config(self.run_dir)
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


def generate(generator, n: int, seed: int = 0, batch_size: int = 1000, labels=None) -> np.ndarray:
    """n images from `generator`: uint8 (n, 28, 28), 0-255. The noise is the first n rows of
    numpy.random.default_rng(seed).standard_normal, so a seed gives the same images every time
    and the first k images do not depend on n. labels (conditional generators only): a
    class, or classes that image i takes in turn (see label_sequence); None: every class in
    turn. Raises UsageError for labels an unconditional generator is given, or outside its
    classes."""
    return generate_with_labels(generator, n, seed, labels, batch_size)[0]


def generate_with_labels(
    generator, n: int, seed: int = 0, labels=None, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray | None]:
    """generate(), and the labels the images were generated for: uint8 (n,), None for an
    unconditional generator."""
    from gan.data import to_uint8
    from gan.models import generator_inputs, with_labels

    noise_dim, num_classes = generator_inputs(generator)
    if num_classes is None and labels is not None:
        raise UsageError("the generator is not conditional: it takes no labels")
    noise = np.random.default_rng(seed).standard_normal((n, noise_dim), dtype=np.float32)
    classes = None if num_classes is None else label_sequence(labels, n, num_classes)
    batches = []
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        batch_labels = None if classes is None else classes[rows].astype(np.int32)
        images = generator(with_labels(noise[rows], batch_labels), training=False)
        batches.append(to_uint8(images))
    return np.concatenate(batches), classes


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


def parse_labels(text: str) -> tuple[int, ...]:
    """--label: '7' -> (7,), '0-3' -> (0, 1, 2, 3), '1,3,5' -> (1, 3, 5); items may mix,
    e.g. '0-2,7'. Raises argparse.ArgumentTypeError (one line, exit 2) for anything else."""
    labels = []
    for item in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
        if not first <= last <= MAX_CLASS:
            raise argparse.ArgumentTypeError(
                f"expected a class 0-{MAX_CLASS}, a range FIRST-LAST or a comma list of them "
                f"(e.g. 7, 0-9, 1,3,5), got {text!r}"
            )
        labels.extend(range(first, last + 1))
    return tuple(labels)


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


def run_config(run_dir: Path) -> Config:
    """The Config a run was trained with (its config.json). Raises UsageError if unreadable."""
    path = Path(run_dir) / rundir.CONFIG
    try:
        return Config.from_json(path.read_text())
    except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise UsageError(f"{path}: not a readable run config ({error})") from None


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a generator and its noise, shared with gan.evaluate."""
    parser.add_argument(
        "--run", metavar="RUN_DIR", help="a run directory (e.g. logs/NAME): its generator.keras"
    )
    parser.add_argument(
        "--generator", metavar="FILE", help="a saved generator (.keras) instead of --run"
    )
    parser.add_argument(
        "--checkpoint",
        metavar="EPOCH|latest|PATH",
        help=f"with --run: the generator saved after epoch EPOCH (RUN_DIR/{rundir.CHECKPOINTS}/"
        f"ckpt-EPOCH), the latest checkpoint, or a checkpoint path, instead of generator.keras",
    )
    parser.add_argument(
        "--seed",
        type=whole_number(0),
        default=0,
        help="seed of the noise: same seed, same images (default: 0)",
    )


def default_output(
    source: GeneratorSource | None, kind: str, seed: int, suffix: str
) -> Path | None:
    """RUN_DIR/generated/KIND-epochE-seedS.SUFFIX (without -epochE if the epoch is unknown) for a
    generator from a run directory; None otherwise."""
    if source is None or source.run_dir is None:
        return None
    epoch = f"-epoch{source.epoch}" if source.epoch else ""
    return source.run_dir / rundir.GENERATED / f"{kind}{epoch}-seed{seed}{suffix}"


def check_output(
    path: str | bool | None, suffix: str, flag: str, overwrite: bool, default: Path | None = None
) -> Path | None:
    """The file an output flag writes, checked before any work. path: None (flag not given),
    True (given without a file: `default`, or the first of DEFAULT-2, DEFAULT-3, ... that does
    not exist; its directory is created), or the file given: right suffix, a directory to
    write it in, and no existing file unless `overwrite`. Raises UsageError."""
    if path is None:
        return None
    if path is True:
        if default is None:
            raise UsageError(
                f"{flag} needs a file name ({flag} FILE{suffix}): only --run has a run "
                f"directory to write it in"
            )
        default.parent.mkdir(exist_ok=True)
        numbered = (
            default.with_name(f"{default.stem}-{number}{suffix}") for number in itertools.count(2)
        )
        return next(p for p in itertools.chain([default], numbered) if not p.exists())
    path = Path(path)
    if path.suffix != suffix:
        raise UsageError(f"{flag} {path}: the file name must end in {suffix}")
    if path.exists() and not overwrite:
        raise UsageError(f"{flag} {path} already exists; choose another name or --overwrite")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: no directory {path.parent}")
    return path


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


def _main(args: argparse.Namespace) -> int:
    try:
        source = GeneratorSource.resolve(args.run, args.generator, args.checkpoint)
        if args.out is None and args.png is None:
            raise UsageError("nothing to write: give --out [FILE.npz] and/or --png [FILE.png]")
        out = check_output(
            args.out,
            ".npz",
            "--out",
            args.overwrite,
            default_output(source, "samples", args.seed, ".npz"),
        )
        png = check_output(
            args.png,
            ".png",
            "--png",
            args.overwrite,
            default_output(source, "grid", args.seed, ".png"),
        )
        check_label(args.label, source)  # from the run's config.json, before TensorFlow
        generator = source.load()
        count = max(args.n if out else 0, args.rows * args.cols if png else 0)
        grid_pixels = (args.rows * 30 + 2) * (args.cols * 30 + 2) * args.scale**2 if png else 0
        from gan.models import generator_inputs

        noise_dim, num_classes = generator_inputs(generator)
        if args.label is not None and num_classes is None:  # a bare .keras file
            raise UsageError(f"--label: {source.path} is not a conditional generator")
        labels = None if num_classes is None else label_sequence(args.label, count, num_classes)
        check_memory(count, noise_dim, grid_pixels)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    from gan.images import make_grid, save_png

    images = generate(generator, count, args.seed, labels=labels)
    if out:
        arrays = {"images": images[: args.n]}
        if labels is not None:
            arrays["labels"] = labels[: args.n]
        np.savez_compressed(out, **arrays)
        keys = "key 'images', uint8" + (
            "; their classes: key 'labels'" if "labels" in arrays else ""
        )
        print(f"Wrote {args.n} images from {source.describe()} to {out} ({keys})")
    if png:
        save_png(make_grid(images, args.rows, args.cols, scale=args.scale), png)
        print(f"Wrote a {args.rows}x{args.cols} grid from {source.describe()} to {png}")
    return 0


def check_label(label: tuple[int, ...] | None, source: GeneratorSource) -> None:
    """Refuses --label for a run that is not conditional, or with a class the run does not
    have, from the run's config.json alone (no TensorFlow). A bare .keras file is checked
    once loaded."""
    if label is None or source.run_dir is None:
        return
    num_classes = source.num_classes()
    if num_classes is None:
        raise UsageError(
            f"--label: {source.run_dir} is not a conditional run (train with --conditional)"
        )
    label_sequence(label, 1, num_classes)


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


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Draw images from a trained generator: an .npz of uint8 images (key "
        "'images', shape (N, 28, 28), 0-255; for a conditional run also their classes, key "
        "'labels', shape (N,)) for gan.evaluate, and/or a PNG grid to look at.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--n", type=whole_number(1), default=10000, help="images to write to --out (default: 10000)"
    )
    parser.add_argument(
        "--label",
        type=parse_labels,
        metavar="CLASSES",
        help="for a conditional run (--conditional): the classes to draw, a class (7), a "
        "range (0-9) or a comma list (1,3,5); image i gets the list's label i mod its length "
        "(default: every class in turn). The .npz keeps them as 'labels' (uint8)",
    )
    parser.add_argument(
        "--out",
        nargs="?",
        const=True,
        metavar="FILE.npz",
        help=f"write the images to this .npz file (without FILE, with --run: RUN_DIR/{rundir.GENERATED}/"
        "samples-epochE-seedS.npz, numbered -2, -3, ... rather than overwrite one)",
    )
    parser.add_argument(
        "--png",
        nargs="?",
        const=True,
        metavar="FILE.png",
        help=f"write a ROWS x COLS grid as a PNG (without FILE, with --run: RUN_DIR/{rundir.GENERATED}/"
        "grid-epochE-seedS.png, numbered likewise)",
    )
    parser.add_argument(
        "--rows", type=whole_number(1), default=10, help="grid rows for --png (default: 10)"
    )
    parser.add_argument(
        "--cols", type=whole_number(1), default=10, help="grid columns for --png (default: 10)"
    )
    parser.add_argument(
        "--scale",
        type=whole_number(1),
        default=2,
        help="--png pixels per image pixel (default: 2; a 10x10 grid is then 604 px square)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out / --png FILE if it exists"
    )
    add_verbose_argument(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
