"""What the command lines (gan.train, gan.generate, gan.evaluate) share: bad input is one line
on stderr with exit status 2, also when TensorFlow has started and written its own lines."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

from gan.data import available_source
from gan.errors import UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage dump: the message already names the flag.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
def native_stderr_held_back(unless: type[Exception] | tuple[type[Exception], ...]):
    """Holds back everything written to file descriptor 2 in the block (TensorFlow's C++
    start-up messages go there, whatever TF_CPP_MIN_LOG_LEVEL says) and writes it out when the
    block ends, unless the block raised `unless`: that error's one line is then all there is."""
    sys.stderr.flush()
    original = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        show = True
        try:
            yield
        except unless:
            show = False
            raise
        finally:
            sys.stderr.flush()
            os.dup2(original, 2)
            os.close(original)
            if show:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()
