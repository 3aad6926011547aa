"""What the command lines share (gan.cli): TensorFlow's messages held back, the data source."""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from gan import cli
from gan.errors import UsageError


def _stderr_of_a_block(capfd, verbose=False, error=None) -> str:
    """stderr of a held-back block that writes a native line (straight to file descriptor 2, as
    TensorFlow's C++ code does) and one of our own lines, then raises `error` if given."""
    with contextlib.suppress(UsageError, RuntimeError):
        with cli.native_stderr_held_back(verbose):
            os.write(2, b"native line\n")
            print("our line", file=sys.stderr)
            if error is not None:
                raise error
    return capfd.readouterr().err


def test_native_messages_are_dropped_on_success_and_after_a_usage_error(capfd):
    assert _stderr_of_a_block(capfd) == "our line\n"
    assert _stderr_of_a_block(capfd, error=UsageError("bad flag")) == "our line\n"


def test_native_messages_are_shown_after_a_crash_and_as_they_come_when_verbose(capfd):
    assert _stderr_of_a_block(capfd, error=RuntimeError("bug")) == "our line\nnative line\n"
    assert _stderr_of_a_block(capfd, verbose=True) == "native line\nour line\n"


@pytest.mark.parametrize(
    "flag, variable, expected",
    [([], None, False), (["--verbose"], None, True), ([], "1", True), ([], "0", False)],
)
def test_verbose_is_the_flag_or_the_environment_variable(monkeypatch, flag, variable, expected):
    parser = cli.Parser()
    cli.add_verbose_argument(parser)
    if variable is None:
        monkeypatch.delenv(cli.VERBOSE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(cli.VERBOSE_VARIABLE, variable)
    assert cli.verbose(parser.parse_args(flag)) is expected


def test_the_offline_fallback_is_said_once_and_an_explicit_source_silently_kept(
    monkeypatch, capsys
):
    monkeypatch.setattr(cli, "available_source", lambda dataset: "bundled")
    assert cli.data_source("mnist", None, None, "training on") == "bundled"
    assert capsys.readouterr().err == (
        "offline: training on the 10,000 bundled MNIST test digits; pass --data for others\n"
    )
    assert cli.data_source("mnist", None, "bundled", "training on") == "bundled"
    assert cli.data_source("mnist", "digits/", None, "training on") is None
    assert capsys.readouterr().err == ""
    with pytest.raises(UsageError, match="--source keras picks where"):
        cli.data_source("mnist", "digits/", "keras", "training on")
