"""One process per run directory (gan.rundir.RunLock), from the lock itself to the command lines.

The command-line tests stop the first process with the documented hook GAN_TEST_SIGNAL
(SIGSTOP at the end of epoch 1, holding the lock) and start the second one then: no timing.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import shlex
import signal
import stat
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    PROJECT_ROOT,
    assert_usage_error,
    event_steps,
    make_images,
    run_module,
    write_idx,
)
from test_resume import _latest, _steps
from test_train import METRICS, finish, run_cli, start_cli

from gan import rundir
from gan.errors import UsageError


def test_a_second_lock_is_refused_naming_the_holder_until_the_first_is_released(tmp_path):
    with rundir.RunLock(tmp_path / "r", create=True):
        with pytest.raises(rundir.RunInUse, match=rf"run .*r is in use by process {os.getpid()} "):
            rundir.RunLock(tmp_path / "r")
        with pytest.raises(rundir.RunInUse, match="wait for it or stop it"):
            rundir.check_free(tmp_path / "r")
    rundir.check_free(tmp_path / "r")
    rundir.RunLock(tmp_path / "r").release()


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    hold = (
        "import sys; from gan import rundir; "
        "rundir.RunLock(sys.argv[1], create=True); print('locked', flush=True); input()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(tmp_path / "r")],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(rundir.RunInUse, match=f"process {holder.pid} "):
        rundir.check_free(tmp_path / "r")
    holder.kill()
    holder.wait()
    with rundir.RunLock(tmp_path / "r"):  # no stale lock
        pass


def test_a_new_run_in_an_existing_directory_is_refused_unless_it_is_empty(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists; choose another --run name"):
        rundir.RunLock(tmp_path / "r", create=True)
    (tmp_path / "empty").mkdir()  # as a process killed while creating its run leaves it
    rundir.RunLock(tmp_path / "empty", create=True).release()
    rundir.RunLock(tmp_path / "empty", create=True).release()  # only the lock file in it


def _stopped(process: subprocess.Popen) -> None:
    """Waits until `process` has stopped itself (SIGSTOP from GAN_TEST_SIGNAL)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/stat") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        assert process.poll() is None, finish(process).stderr
        time.sleep(0.1)
    raise AssertionError("the training process did not stop itself")


def _history_epochs(run_dir) -> list[str]:
    with open(run_dir / "history.csv", newline="") as file:
        return [row["epoch"] for row in csv.DictReader(file)]


@pytest.fixture
def flags(tmp_path, data_dir):
    logs = tmp_path / "logs"
    return ["--data", data_dir, "--logdir", logs, "--run", "r", "--no-jit", "--noise-dim", 8]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see a stopped process")
@pytest.mark.parametrize("second", ["new", "resume", "evaluate"])
def test_a_second_process_on_a_busy_run_exits_2_and_every_epoch_is_written_once(
    tmp_path, flags, second
):
    run_dir = tmp_path / "logs" / "r"
    if second == "resume":  # resume+resume: both resume the run
        assert run_cli(*flags, "--epochs", 1).returncode == 0
        hook = {"GAN_TEST_SIGNAL": "SIGSTOP@epoch2"}
        first = start_cli(*flags, "--epochs", 3, "--resume", env=hook)
    else:
        first = start_cli(*flags, "--epochs", 2, env={"GAN_TEST_SIGNAL": "SIGSTOP@epoch1"})
    try:
        _stopped(first)
        if second == "evaluate":
            result = run_module("gan.evaluate", "--run", run_dir, "--checkpoint", "latest")
        else:
            resume = ["--resume", "--epochs", 3] if second == "resume" else ["--epochs", 2]
            result = run_cli(*flags, *resume)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert_usage_error(result, f"run {run_dir} is in use by process {first.pid} (started ")
    assert result.stderr.rstrip().endswith("wait for it or stop it")
    assert finish(first).returncode == 0
    epochs = 3 if second == "resume" else 2
    assert _history_epochs(run_dir) == [str(e) for e in range(1, epochs + 1)]
    steps = _steps(run_dir)
    assert all(steps[name] == list(range(1, epochs + 1)) for name in METRICS)
    assert not (run_dir / "eval.json").exists()


# --- a full disk -------------------------------------------------------------------------------


def test_disk_full_recognises_enospc_however_it_is_raised(tmp_path):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "history.csv"))
    assert rundir.disk_full(full, tmp_path).startswith(
        f"the disk is full: could not write {tmp_path / 'history.csv'} ("
    )
    assert rundir.disk_full(full, tmp_path).endswith(f" MiB free for {tmp_path})")
    tensorflow_style = RuntimeError(
        "{{function_node SaveV2}} /run/ckpt-1_temp/part-0; No space left on device [Op:SaveV2]"
    )
    assert "could not write /run/ckpt-1_temp/part-0 (" in rundir.disk_full(
        tensorflow_style, tmp_path
    )
    try:
        try:
            raise full
        except OSError as error:
            raise ValueError("wrapped") from error
    except ValueError as wrapped:
        assert rundir.disk_full(wrapped, tmp_path) is not None
    assert rundir.disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path) is None
    assert rundir.disk_full(MemoryError(), tmp_path) is None


def test_a_checkpoint_that_cannot_be_written_stops_the_run_with_exit_1(
    tmp_path, data_dir, monkeypatch, capfd
):
    """The write error injected where TensorFlow has written the checkpoint's files, just
    before the manager records it: its files must go, the previous checkpoint stays latest."""
    from gan import checkpoints, train

    def no_space(save_path):
        if save_path.endswith("ckpt-2"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), save_path + ".index")

    monkeypatch.setattr(checkpoints, "_fsync_checkpoint", no_space)
    logs = tmp_path / "logs"
    code = train.main(["--data", str(data_dir), "--logdir", str(logs), "--run", "r",
                       "--epochs", "3", "--noise-dim", "8", "--no-jit",
                       "--checkpoint-every", "1"])  # fmt: skip
    assert code == 1
    last = capfd.readouterr().err.splitlines()[-1]
    assert last.startswith("python -m gan.train: error: the disk is full: could not write ")
    assert last.endswith(f"free some space, then resume with: python -m gan.train --logdir "
                         f"{logs} --run r --resume")  # fmt: skip
    directory = logs / "r" / "checkpoints"
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-1")
    assert not list(directory.glob("ckpt-2*"))


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs: room for a run's config, events and first checkpoint (8.5 MiB), not
    for a second. Skipped where this process may not mount one."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mount_point],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", mount_point], check=True)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes_once_there_is_space(
    small_disk, tmp_path
):
    images = write_idx(tmp_path / "images-idx3-ubyte", make_images(256))
    flags = ["--logdir", small_disk, "--run", "r"]
    full = run_cli(*flags, "--data", images, "--epochs", 3, "--noise-dim", 8, "--no-jit")
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    last = full.stderr.splitlines()[-1]
    assert last.startswith("python -m gan.train: error: the disk is full: could not write ")
    assert re.search(r"\(\d+\.\d MiB free for .*\); free some space, then resume with: ", last)
    run_dir = small_disk / "r"
    assert _latest(run_dir) == "ckpt-0"
    assert not list(run_dir.rglob("*_temp*")) and not list(run_dir.rglob(".partial-*"))

    subprocess.run(["mount", "-o", "remount,size=64m", small_disk], check=True)
    resumed = run_cli(*shlex.split(last.split("resume with: ", 1)[1])[3:])
    assert resumed.returncode == 0, resumed.stderr
    assert _history_epochs(run_dir) == ["1", "2", "3"]
    assert all(_steps(run_dir)[name] == [1, 2, 3] for name in METRICS)


def _write_epochs(run_dir, epochs):
    """Per-epoch outputs as a run writes them: events (scalars and an image), history rows,
    grids; then a record cut short, as by a kill during a write."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for epoch in epochs:
            tf.summary.scalar("d_loss", 0.1 * epoch, step=epoch)
            tf.summary.image("samples", np.zeros((1, 4, 4, 1), np.float32), step=epoch)
    writer.close()
    (events,) = run_dir.glob("*tfevents*")
    with open(events, "ab") as file:
        file.write(b"\x10\x00\x00")
    with open(run_dir / "history.csv", "w", newline="") as file:
        rows = csv.DictWriter(file, fieldnames=["epoch", "d_loss"])
        rows.writeheader()
        rows.writerows({"epoch": epoch, "d_loss": 0.1 * epoch} for epoch in epochs)
    (run_dir / "samples").mkdir()
    for epoch in epochs:
        (run_dir / "samples" / f"epoch_{epoch:03d}.png").write_bytes(b"png")
    return events


def test_roll_back_removes_every_output_after_the_checkpoint_epoch(tmp_path):
    events = _write_epochs(tmp_path, [1, 2, 3])
    os.chmod(events, 0o644)
    (tmp_path / ".partial-x1").write_bytes(b"left by a killed roll-back")
    history, samples = tmp_path / "history.csv", tmp_path / "samples"

    rundir.roll_back(tmp_path, 2)

    assert event_steps(events) == [("d_loss", 1), ("samples", 1), ("d_loss", 2), ("samples", 2)]
    assert stat.S_IMODE(events.stat().st_mode) == 0o644
    with open(history, newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]
    assert sorted(p.name for p in samples.iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert not list(tmp_path.glob(".partial-*"))
    kept = events.read_bytes()
    rundir.roll_back(tmp_path, 2)  # nothing more to do
    assert events.read_bytes() == kept


def _record(payload: bytes) -> bytes:
    """A TFRecord: length, its masked CRC-32C, payload, its masked CRC-32C."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


def _corrupt_length(events, history):
    content = bytearray(events.read_bytes())
    first_length = struct.unpack_from("<Q", content)[0]
    content[12 + first_length + 4] ^= 0x01  # the second record's length field
    events.write_bytes(bytes(content))


def _bad_protobuf(events, history):
    content = events.read_bytes()
    first_end = 12 + struct.unpack_from("<Q", content)[0] + 4
    events.write_bytes(content[:first_end] + _record(b"\xff\xff\xff") + content[first_end:])


def _bad_csv_row(events, history):
    with open(history, "a", newline="") as file:
        file.write("not,a,row\r\n4,0.4\r\n")


ROLL_BACK_DAMAGE = {  # case -> (damage, the damaged file)
    "corrupt-length": (_corrupt_length, "events"),
    "bad-protobuf": (_bad_protobuf, "events"),
    "bad-csv-row": (_bad_csv_row, "history"),
}


@pytest.mark.parametrize("case", ROLL_BACK_DAMAGE)
def test_roll_back_moves_a_damaged_file_aside_untouched_and_rolls_back_the_rest(tmp_path, case):
    damage, which = ROLL_BACK_DAMAGE[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    events = _write_epochs(run_dir, [1, 2, 3])
    history, samples = run_dir / "history.csv", run_dir / "samples"
    damage(events, history)
    damaged_file = {"events": events, "history": history}[which]
    content = damaged_file.read_bytes()

    notices = rundir.roll_back(run_dir, 2)

    moved = run_dir / "damaged" / damaged_file.name
    (notice,) = notices
    assert notice.startswith(f"cannot parse {damaged_file} (")
    assert notice.endswith(f"); moved it untouched to {moved}")
    assert not damaged_file.exists() and moved.read_bytes() == content  # every epoch kept
    if which == "history":
        assert [tag_step[1] for tag_step in event_steps(events)] == [1, 1, 2, 2]  # rolled back
    else:
        with open(history, newline="") as file:
            assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]
    assert sorted(p.name for p in samples.iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert rundir.roll_back(run_dir, 2) == []  # damaged/ is left alone
    assert moved.read_bytes() == content


def test_roll_back_drops_a_history_row_cut_short_at_the_end(tmp_path):
    events = _write_epochs(tmp_path, [1, 2])
    history = tmp_path / "history.csv"
    with open(history, "a", newline="") as file:
        file.write("3,0.")  # a kill during the write of epoch 3's row
    assert rundir.roll_back(tmp_path, 2) == []
    with open(history, newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]
    assert {step for _, step in event_steps(events)} == {1, 2}
