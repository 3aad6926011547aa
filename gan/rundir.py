"""A run directory LOGDIR/RUN and the rules for writing it: one process at a time, and files
replaced atomically.

- `RunLock`: an exclusive lock on a run directory, held by every process while it writes
  there: gan.train (a new run and a resumed one) and gan.evaluate --run. A second process is
  refused with one line naming the holder (`RunInUse`, a UsageError: exit status 2).
- `write_atomically`: replaces a file so that a kill leaves either the old or the new one.

No TensorFlow here: the command lines check a run directory before TensorFlow loads.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from gan.errors import UsageError

# The files of a run directory RUN: this is the one place that spells their names.
CONFIG = "config.json"  # every option, automatic choices resolved (gan.config.Config.to_json)
HISTORY = "history.csv"  # one row of metrics per epoch
LOSSES_PLOT = "losses.png"  # the losses of every row of HISTORY
SAMPLES = "samples"  # samples/epoch_NNN.png: grids of G(fixed noise)
EVALUATIONS = "eval.json"  # a record of every evaluation (gan.evaluate, --eval-every)
CHECKPOINTS = "checkpoints"  # checkpoints/ckpt-E.*: the training state (gan.checkpoints)
GENERATOR = "generator.keras"  # the network samples come from (with --ema, the average)
GENERATOR_RAW = "generator_raw.keras"  # with --ema: the trained generator itself
DISCRIMINATOR = "discriminator.keras"
GENERATED = "generated"  # generated/: gan.generate's and gan.evaluate's outputs by default
DAMAGED = "damaged"  # damaged/: files the roll-back cannot parse, moved there untouched
LOCK_FILE = ".lock"  # the file RunLock locks; it holds the holder's pid and start time
PARTIAL_PREFIX = ".partial-"  # temporary files of write_atomically


class RunInUse(UsageError):
    """Another process holds the run directory's lock; the message names it."""


class RunLock:
    """An exclusive lock on the run directory `run_dir`, held from construction until
    `release()` (or the end of a `with` block).

    The lock is flock(2) on RUN/.lock, so the kernel releases it when the holding process
    ends in any way, SIGKILL included: a lock is never stale. While it is held, the file
    holds the holder's pid and start time, which `RunInUse`'s message reports. The file
    itself stays (deleting it would let two processes lock two different files).

    create=True: a new run; creates run_dir (and missing parents), or takes over one that
    holds nothing but a lock file (see check_new), and locks it. Of several processes
    creating the same run at once, exactly one gets it. Raises RunInUse if another process
    holds the lock, UsageError if run_dir is taken (create=True) or cannot be created or
    written.
    """

    CHECK_WAIT = 1.0  # seconds to wait out another process's check_free, which lets go at once

    def __init__(self, run_dir: str | Path, create: bool = False):
        self.run_dir = Path(run_dir)
        if create:
            _create(self.run_dir)
        try:
            self._fd = os.open(
                self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
            )
        except OSError as error:
            raise UsageError(
                f"cannot write to {self.run_dir} ({error.strerror or error})"
            ) from None
        deadline = time.monotonic() + self.CHECK_WAIT
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:  # perhaps a check_free, which lets go at once
                    time.sleep(0.01)
                    continue
                holder = _holder(self._fd)
                os.close(self._fd)
                raise RunInUse(_in_use(self.run_dir, holder)) from None
        if create and _taken(self.run_dir):  # created by another process since _create
            self.release()
            raise UsageError(_already_exists(self.run_dir))
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode())

    def release(self) -> None:
        """Lets go of the lock (also when called again)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no holder any more
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def check_free(run_dir: str | Path) -> None:
    """Raises RunInUse if a process holds `run_dir`'s lock. Writes nothing; a RunLock taken
    afterwards is what actually keeps others out."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (or no directory): no process has ever locked it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunInUse(_in_use(Path(run_dir), _holder(fd))) from None
    finally:
        os.close(fd)


def write_atomically(path: Path, content: bytes) -> None:
    """Replaces (or creates) the file `path` with `content`, keeping its permissions (a new
    file gets the usual ones, 0666 less the umask), so that a kill leaves either the old file
    (or none) or the new one, and an error (a full disk) leaves the old file and no temporary
    one.

    The temporary name starts with .partial- (and never contains 'tfevents', so TensorBoard
    does not read it); gan.checkpoints.roll_back deletes any that a kill left behind.
    """
    handle, temporary = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes it private (0600)
        if path.exists():
            shutil.copymode(path, temporary)
        else:
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def disk_full(error: BaseException, run_dir: Path) -> str | None:
    """If `error`, or an error it was raised from, is a full disk (ENOSPC or EDQUOT, also as
    the message of TensorFlow's ResourceExhaustedError): one line saying what could not be
    written and how much space is left for run_dir. Otherwise None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            what = error.filename or run_dir
            break
        text = str(error)
        if any(os.strerror(code) in text for code in (errno.ENOSPC, errno.EDQUOT)):
            path = re.search(r"(/[^\s;:]+)", text)  # TensorFlow names the file in its message
            what = path[1] if path else text.strip().splitlines()[0]
            break
        error = error.__cause__ or error.__context__
    else:
        return None
    try:
        left = f"{shutil.disk_usage(run_dir).free / 2**20:.1f} MiB"
    except OSError:
        left = "an unknown amount"
    return f"the disk is full: could not write {what} ({left} free for {run_dir})"


def check_new(run_dir: str | Path) -> None:
    """Refuses `run_dir` for a new run if it exists and holds anything but a lock file: a
    run is never overwritten, but a directory left empty by a process that failed or was
    killed as it created it is taken over. Raises RunInUse or UsageError; writes nothing."""
    check_free(run_dir)
    if _taken(Path(run_dir)):
        raise UsageError(_already_exists(run_dir))


def _taken(run_dir: Path) -> bool:
    return run_dir.exists() and not (
        run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {LOCK_FILE}
    )


def _already_exists(run_dir) -> str:
    return f"{run_dir} already exists; choose another --run name, or add --resume to continue it"


def _create(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        check_new(run_dir)
    except OSError as error:
        raise UsageError(f"cannot create {run_dir} ({error.strerror or error})") from None


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _holder(fd: int) -> str:
    """'process PID (started TIME)' from a lock file's content, as RunLock writes it."""
    content = os.pread(fd, 200, 0).decode(errors="replace").strip()
    pid, _, started = content.partition(" ")
    return f"process {pid} (started {started})" if pid.isdigit() else "another process"


def _in_use(run_dir: Path, holder: str) -> str:
    return f"run {run_dir} is in use by {holder}; wait for it or stop it"
