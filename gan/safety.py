"""Stopping training without losing it: Ctrl-C and SIGTERM stop at the next epoch boundary
(after its checkpoint), a NaN or infinite loss stops at once (before anything of the epoch is
written), and a test hook sends the training process a signal at an exact point.

No TensorFlow here: the command line handles these exceptions and validates the hook before
TensorFlow loads. The callbacks that act on them are in gan.callbacks.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import threading

from gan.errors import UsageError

SIGNAL_HOOK_VARIABLE = "GAN_TEST_SIGNAL"


class NonFiniteLoss(RuntimeError):
    """A loss or a variable became NaN or infinite; the message names the epoch and step."""


class Interrupted(Exception):
    """Training stopped early, at an epoch boundary, because of a signal; the checkpoint of
    that epoch is the latest."""

    def __init__(self, signum: int, epochs_done: int, epochs: int):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"Stopped by {name} after epoch {epochs_done} of {epochs}; checkpoint saved"
        )


class StopRequest:
    """While active (a `with` block in the main thread), the first SIGINT (Ctrl-C) or SIGTERM
    sets `signum`, which asks training to stop after the current epoch and its checkpoint; a
    second one raises KeyboardInterrupt at once (this epoch is then lost, earlier ones are
    not). Elsewhere the signals keep their usual handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            "\n"
            * sys.stderr.isatty()  # off the progress bar's line
            + f"{signal.Signals(signum).name}: stopping after this epoch to save a checkpoint "
            f"(press Ctrl-C again to stop at once and lose this epoch)",
            file=sys.stderr,
            flush=True,
        )


@dataclasses.dataclass(frozen=True)
class SignalHook:
    """Test hook: send `signum` to the training process itself, once, either when global step
    `step` has run (counted from the run's first epoch; with several steps per call, at the
    first call that reaches it) or at the end of epoch `epoch` after its summaries, history
    row and grid are written but before its checkpoint. Killing from outside by timing is
    flaky when an epoch lasts milliseconds; this is exact."""

    signum: int
    step: int | None = None
    epoch: int | None = None


def signal_hook_from_env(environ=os.environ) -> SignalHook | None:
    """The hook GAN_TEST_SIGNAL asks for: SIGNAME@STEP (e.g. SIGKILL@37: after global step 37)
    or SIGNAME@epochN (e.g. SIGKILL@epoch3: at the end of epoch 3, before its checkpoint).
    None if the variable is unset; UsageError if it is malformed."""
    value = environ.get(SIGNAL_HOOK_VARIABLE)
    if not value:
        return None
    match = re.fullmatch(r"(SIG[A-Z]+)@(epoch)?([1-9][0-9]*)", value)
    if not match or match[1] not in signal.Signals.__members__:
        raise UsageError(
            f"{SIGNAL_HOOK_VARIABLE}={value!r}: expected SIGNAME@STEP or SIGNAME@epochN "
            f"(e.g. SIGKILL@37); unset it for normal training"
        )
    signum, number = signal.Signals[match[1]].value, int(match[3])
    return SignalHook(signum, epoch=number) if match[2] else SignalHook(signum, step=number)
