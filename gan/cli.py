"""What the command lines (gan.train, gan.generate, gan.evaluate) share: bad input is one line
on stderr with exit status 2, and stderr carries only the project's own lines (TensorFlow's C++
messages are held back unless the command crashes, or --verbose / GAN_VERBOSE=1 asks for them).
gan.generate and gan.evaluate also share the flags that pick a generator and where their output
files go (RUN_DIR/generated/ by default, never overwriting a file unasked).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gan import rundir
from gan.data import available_source
from gan.errors import UsageError

if TYPE_CHECKING:
    from gan.sampling import GeneratorSource

VERBOSE_VARIABLE = "GAN_VERBOSE"


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, but a help text is never broken inside a flag (`--sample-` / `every`)."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """argparse's parser with one-line errors (exit status 2) and help texts wrapped between
    words only."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        # One line, no usage dump: the message already names the flag.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """--verbose: TensorFlow's messages are not held back (see native_stderr_held_back)."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show TensorFlow's own messages on stderr (its C++ start-up lines: oneDNN, "
        "CUDA, absl), which are otherwise held back and shown only if the command crashes; "
        f"setting the environment variable {VERBOSE_VARIABLE}=1 does the same",
    )


def run(parser: argparse.ArgumentParser, command, argv: list[str] | None) -> int:
    """A command line's main: parses `argv` with `parser`, then returns command(args), with
    TensorFlow's C++ messages held back (native_stderr_held_back) while it runs."""
    args = parser.parse_args(argv)
    with native_stderr_held_back(verbose(args)):  # TensorFlow loads in here
        return command(args)


def verbose(args: argparse.Namespace) -> bool:
    """Whether --verbose was given or GAN_VERBOSE is set to anything but "" or "0"."""
    return args.verbose or os.environ.get(VERBOSE_VARIABLE, "0") not in ("", "0")


def whole_number(minimum: int):
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def data_source(dataset: str, data: str | None, source: str | None, use: str) -> str | None:
    """The --source to record for a run or an evaluation: None with --data (its files are the
    images), `source` if given, else gan.data.available_source(dataset). When that is the
    bundled digits (keras.datasets cannot be had: offline) it says so in one line on stderr,
    "offline: USE the 10,000 bundled MNIST test digits; ...". Raises UsageError for --source
    with --data."""
    if data is not None:
        if source is not None:
            raise UsageError(
                f"--source {source} picks where --dataset's images come from, --data gives "
                f"other images: drop one of them"
            )
        return None
    if source is not None:
        return source
    source = available_source(dataset)
    if source == "bundled":
        print(
            f"offline: {use} the 10,000 bundled MNIST test digits; pass --data for others",
            file=sys.stderr,
            flush=True,
        )
    return source


@contextlib.contextmanager
def native_stderr_held_back(verbose: bool = False) -> Iterator[None]:
    """Holds back what is written straight to file descriptor 2 in the block: TensorFlow's C++
    messages (its start-up lines come whatever TF_CPP_MIN_LOG_LEVEL says). Python's sys.stderr
    (the project's own lines, warnings, tracebacks) still reaches the terminal at once. The
    held messages are written out when the block ends if it raised anything but a UsageError
    (a crash they may explain); otherwise they are dropped. verbose: nothing is held back."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    python_stderr = direct = sys.stderr
    if _writes_to_fd_2(python_stderr):  # else (e.g. pytest's capsys) it bypasses fd 2 anyway
        sys.stderr = direct = open(  # noqa: SIM115 (closed when the block ends)
            original,
            "w",
            encoding=python_stderr.encoding,
            errors=python_stderr.errors,
            buffering=1,
            closefd=False,
        )
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        show = False
        try:
            yield
        except UsageError:
            raise
        except Exception:
            show = True
            raise
        finally:
            if direct is not python_stderr:
                direct.close()
                sys.stderr = python_stderr
            os.dup2(original, 2)
            os.close(original)
            if show:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


def _writes_to_fd_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # no file descriptor behind it
        return False


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a generator and its noise, for gan.generate and gan.evaluate."""
    parser.add_argument(
        "--run",
        metavar="RUN_DIR",
        help=f"a run directory (e.g. logs/NAME): its {rundir.GENERATOR}",
    )
    parser.add_argument(
        "--generator", metavar="FILE", help="a saved generator (.keras) instead of --run"
    )
    parser.add_argument(
        "--checkpoint",
        metavar="EPOCH|latest|PATH",
        help=f"with --run: the generator saved after epoch EPOCH (RUN_DIR/{rundir.CHECKPOINTS}/"
        f"ckpt-EPOCH), the latest checkpoint, or a checkpoint path, instead of {rundir.GENERATOR}",
    )
    parser.add_argument(
        "--seed",
        type=whole_number(0),
        default=0,
        help="seed of the noise: same seed, same images (default: 0)",
    )
    parser.add_argument(
        "--truncation",
        type=positive_number,
        metavar="T",
        help="draw the noise from N(0, 1) truncated to [-T, T] (the truncation trick: more "
        "typical images, less variety; off by default, as in training)",
    )


def default_output(
    source: GeneratorSource | None,
    kind: str,
    seed: int,
    suffix: str,
    truncation: float | None = None,
) -> Path | None:
    """RUN_DIR/generated/KIND-epochE-seedS[-truncT].SUFFIX (without -epochE if the epoch is
    unknown) for a generator from a run directory; None otherwise."""
    if source is None or source.run_dir is None:
        return None
    epoch = f"-epoch{source.epoch}" if source.epoch else ""
    truncated = "" if truncation is None else f"-trunc{truncation:g}"
    return source.run_dir / rundir.GENERATED / f"{kind}{epoch}-seed{seed}{truncated}{suffix}"


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
