"""One process per run directory (gan.rundir.RunLock), from the lock itself to the command lines.

The command-line tests stop the first process with the documented hook GAN_TEST_SIGNAL
(SIGSTOP at the end of epoch 1, holding the lock) and start the second one then: no timing.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_ROOT, assert_usage_error, run_module
from test_resume import _steps
from test_train import METRICS, finish, run_cli, start_cli

from gan import rundir
from gan.config import ConfigError


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


def test_a_new_run_in_an_existing_directory_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(ConfigError, match="already exists; choose another --run name"):
        rundir.RunLock(tmp_path / "r", create=True)


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
