"""A run directory LOGDIR/RUN and the rules for writing it: one process at a time, and files
replaced atomically.

- `RunLock`: an exclusive lock on a run directory, held by every process while it writes
  there: gan.train (a new run and a resumed one) and gan.evaluate --run. A second process is
  refused with one line naming the holder (`RunInUse`, a UsageError: exit status 2).
- `write_atomically`: replaces a file so that a kill leaves either the old or the new one.
- `roll_back`: on resume, removes what a run wrote after its latest checkpoint, so that every
  epoch is recorded exactly once; a file it cannot parse is moved aside, never cut.
- `read_config` / `write_config`: the run's options (config.json); `read_records` /
  `append_record`: the evaluations (eval.json); `sample_grid_name`: samples/epoch_NNN.png.

No TensorFlow here: the command lines check a run directory before TensorFlow loads.
"""

from __future__ import annotations

import csv
import datetime
import errno
import fcntl
import io
import json
import os
import re
import shutil
import struct
import tempfile
import time
from pathlib import Path

from gan.errors import UsageError

# The files of a run directory RUN: this is the one place that spells their names.
CONFIG = "config.json"  # every option, automatic choices resolved (gan.config.Config.to_json)
HISTORY = "history.csv"  # one row of metrics per epoch
LOSSES_PLOT = "losses.png"  # the losses of every row of HISTORY
SAMPLES = "samples"  # samples/epoch_NNN.png: grids of G(fixed noise) (sample_grid_name)
EVALUATIONS = "eval.json"  # a record of every evaluation (gan.evaluate, --eval-every)
CHECKPOINTS = "checkpoints"  # checkpoints/ckpt-E.*: the training state (gan.checkpoints)
GENERATOR = "generator.keras"  # the network samples come from (with --ema, the average)
GENERATOR_RAW = "generator_raw.keras"  # with --ema: the trained generator itself
DISCRIMINATOR = "discriminator.keras"
CLUSTERS = "clusters.npz"  # with --self-condition: each training image's cluster (gan.clusters)
GENERATED = "generated"  # generated/: gan.generate's and gan.evaluate's outputs by default
DAMAGED = "damaged"  # damaged/: files the roll-back cannot parse, moved there untouched
LOCK_FILE = ".lock"  # the file RunLock locks; it holds the holder's pid and start time
WALL_TIME = "wall_time.json"  # experiments.sweep: the seconds the whole run took
PARTIAL_PREFIX = ".partial-"  # temporary files of write_atomically


_SAMPLE_GRID = r"epoch_(\d+)\.png"


def sample_grid_name(epoch: int) -> str:
    """The file name, under SAMPLES, of the grid drawn after `epoch` epochs: epoch_NNN.png."""
    return f"epoch_{epoch:03d}.png"


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
    does not read it); roll_back deletes any that a kill left behind.
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


def roll_back(run_dir: str | Path, epochs_done: int) -> list[str]:
    """Removes every per-epoch output of epochs after `epochs_done` that a run wrote before it
    was killed: TensorBoard events with step > epochs_done (in every events file under
    run_dir), rows of HISTORY and grids SAMPLES/epoch_NNN.png with NNN > epochs_done. A
    resumed run then writes those epochs again, once.

    It removes nothing else, with one exception: a record or row cut short at the very end
    of a file (by a kill during its write). A file it cannot parse (a damaged record or row
    anywhere else) is never cut at the damage: it is moved, untouched, to RUN/damaged/ (same
    relative path), and the returned list holds one line saying so for each such file.

    Every change replaces a file atomically, so a kill during the roll-back leaves each file
    either as it was or rolled back, and the next resume finishes the job.
    """
    run_dir = Path(run_dir)
    history, samples = run_dir / HISTORY, run_dir / SAMPLES
    for stale in run_dir.rglob(PARTIAL_PREFIX + "*"):  # left by a roll-back that was killed
        stale.unlink()
    damaged = run_dir / DAMAGED
    events = [p for p in sorted(run_dir.rglob("*tfevents*")) if damaged not in p.parents]
    notices = []
    for path, drop in [*((e, _drop_events_after) for e in events), (history, _drop_history_after)]:
        if not path.exists():
            continue
        try:
            drop(path, epochs_done)
        except _Unparsable as problem:
            destination = damaged / path.relative_to(run_dir)
            for copy in range(1, 1000):  # never over a file moved there before
                if not destination.exists():
                    break
                destination = destination.with_name(f"{path.name}.{copy}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            path.rename(destination)
            notices.append(f"cannot parse {path} ({problem}); moved it untouched to {destination}")
    for grid in samples.glob("epoch_*.png") if samples.is_dir() else ():
        number = re.fullmatch(_SAMPLE_GRID, grid.name)
        if number and int(number[1]) > epochs_done:
            grid.unlink()
    return notices


class _Unparsable(Exception):
    """A file the roll-back cannot parse; the message says where and why."""


def _drop_events_after(path: Path, epochs_done: int) -> None:
    """Rewrites an events file without the summaries of steps > epochs_done and without a
    record cut short at its end; leaves the file alone if it has neither. Raises _Unparsable
    if a record is damaged."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    raw = path.read_bytes()
    kept = bytearray()
    for start, end, payload in _tfrecords(raw):
        try:
            event = event_pb2.Event.FromString(payload)
        except DecodeError as error:
            raise _Unparsable(f"the record at byte {start} is no event: {error}") from None
        if not (event.HasField("summary") and event.step > epochs_done):
            kept += raw[start:end]
    if len(kept) != len(raw):
        write_atomically(path, bytes(kept))


def _tfrecords(raw: bytes):
    """(start, end, payload) of each complete TFRecord in `raw`: u64 length, u32 masked CRC-32C
    of the length, payload, u32 masked CRC-32C of the payload. Stops at a record cut short at
    the end of `raw`; raises _Unparsable at a checksum that does not match."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    start = 0
    while start + 12 <= len(raw):
        (length,), (length_crc,) = (
            struct.unpack_from("<Q", raw, start),
            struct.unpack_from("<I", raw, start + 8),
        )
        if masked_crc32c(raw[start : start + 8]) != length_crc:
            raise _Unparsable(f"the length of the record at byte {start} fails its checksum")
        end = start + 12 + length + 4
        if end > len(raw):
            return
        payload = raw[start + 12 : end - 4]
        if masked_crc32c(payload) != struct.unpack_from("<I", raw, end - 4)[0]:
            raise _Unparsable(f"the record at byte {start} fails its checksum")
        yield start, end, payload
        start = end


def _drop_history_after(path: Path, epochs_done: int) -> None:
    """Rewrites the history CSV without the rows of epochs > epochs_done and without a row cut
    short at its end (no line break after it); leaves it alone if it has neither. Raises
    _Unparsable for a row whose epoch is not a whole number or whose fields do not match
    the header."""
    try:
        original = path.read_bytes().decode()
        text = original[: original.rfind("\n") + 1]  # without a last line cut short
        if not text:  # not even a whole header: History starts the file again
            path.unlink()
            return
        header, *rows = csv.reader(io.StringIO(text, newline=""))
    except (UnicodeDecodeError, csv.Error) as error:
        raise _Unparsable(error) from None
    if "epoch" not in header:
        raise _Unparsable("no epoch column")
    column = header.index("epoch")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header) or not row[column].isdigit():
            raise _Unparsable(f"line {number} is not a row of {len(header)} fields with an epoch")
    kept = io.StringIO()
    writer = csv.writer(kept)  # as callbacks.History's csv.DictWriter writes it
    writer.writerow(header)
    writer.writerows(row for row in rows if int(row[column]) <= epochs_done)
    if kept.getvalue() != original:
        write_atomically(path, kept.getvalue().encode())


def read_records(path: Path) -> list:
    """The records of a JSON list file such as eval.json ([] if it does not exist). Raises
    UsageError if it holds anything else, so that appending can never clobber it."""
    path = Path(path)
    try:
        records = json.loads(path.read_text()) if path.exists() else []
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(records, list):
        raise UsageError(f"{path}: not a list of evaluation records; choose another file")
    return records


def append_record(path: Path, record: dict, replaces=None) -> None:
    """Appends a record to a JSON list file (created if missing), atomically: earlier
    evaluations are never lost, and a crash never leaves a half-written file. replaces: a
    predicate; the records it is true for are dropped first (gan.train: those of epochs that a
    resumed run trains again)."""
    path = Path(path)
    records = [r for r in read_records(path) if not (replaces and replaces(r))]
    records.append({"time": datetime.datetime.now().isoformat(timespec="seconds"), **record})
    write_atomically(path, (json.dumps(records, indent=2) + "\n").encode())


def read_config(run_dir: str | Path):
    """The gan.config.Config a run was trained with (its config.json). Raises UsageError if
    it is missing, unreadable or not a whole config."""
    from gan.config import Config

    path = Path(run_dir) / CONFIG
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path.parent} is not a run directory (no {CONFIG} there)") from None
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error})") from None
    try:
        return Config.from_json(text)
    except (ValueError, TypeError) as error:  # bad JSON (a ValueError) or a UsageError
        raise UsageError(f"cannot use {path}: {error}") from None


def write_config(run_dir: Path, config) -> None:
    """Saves a gan.config.Config as the run's config.json, atomically."""
    write_atomically(Path(run_dir) / CONFIG, config.to_json().encode())
