"""`python -m gan.train` timed as a user runs it, as a variant of experiments.timing.

Each round runs the command twice in fresh temporary log directories, for N and for 2N epochs:
its fixed cost (start-up before the first step, and the end: saving the networks, exiting)
is the same in both, so the difference is the time of N epochs of steps and of the
callbacks' per-epoch work (checkpoints, history, TensorBoard, sample grids). Each round also
runs experiments.startup, which splits the start-up into its phases.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from experiments.timing import PROJECT_ROOT, from_project_root
from gan import data, rundir
from gan.config import Config


class EndToEnd:
    """`python -m gan.train --data DATA --epochs N` (and 2N). A call (one round) runs both
    commands and the start-up probe, and returns that round's steps/s end to end; it ignores
    the steps it is given. summary() combines the rounds."""

    def __init__(self, path: str | Path, epochs: int):
        self.given, self.epochs = from_project_root(path), epochs  # what the results record
        self.path = str(Path(path).resolve())  # for the children, whose cwd may differ
        self.images = len(data.load_path(path))
        self.steps_per_epoch = Config().steps_per_epoch(self.images)
        self.runs = {epochs: [], 2 * epochs: []}  # epochs -> run_gan_train's record per round
        self.startups = []  # experiments.startup's phases of each round

    def __call__(self, steps: int | None = None) -> float:
        self.startups.append(probe_startup(self.path))
        for epochs, runs in self.runs.items():
            runs.append(run_gan_train(self.path, epochs))
        return self._rate(*(runs[-1]["wall_seconds"] for runs in self.runs.values()))

    def summary(self) -> dict:
        """The rounds combined, each time as its shortest over the rounds (the least
        disturbed): steps/s end to end and the fixed cost (2 wall(N) - wall(2N)) from the
        wall times; when the first step starts ("Training on" printed, then the first epoch's
        extra time over a later one's) and how long the end takes (last epoch printed to
        exit); the start-up phases of experiments.startup; the largest peak resident memory."""
        runs = [run for rounds in self.runs.values() for run in rounds]
        once, twice = (min(run["wall_seconds"] for run in rounds) for rounds in self.runs.values())
        return {
            "command": f"python -m gan.train --data {self.given} --epochs N --logdir TMP",
            "images": self.images,
            "epochs": list(self.runs),
            "steps_per_second": self._rate(once, twice),
            "fixed_seconds": 2 * once - twice,
            **{
                key: min(run[key] for run in runs)
                for key in ("to_training_line_seconds", "end_seconds")
            },
            # from the 2N-epoch runs: N may be 1
            "first_epoch_extra_seconds": min(
                run["epoch_seconds"][0] - steady_epoch_seconds(run)
                for run in self.runs[2 * self.epochs]
            ),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "startup_seconds": {
                phase: min(startup[phase] for startup in self.startups)
                for phase in self.startups[0]
            },
            "runs": {str(epochs): rounds for epochs, rounds in self.runs.items()},
        }

    def _rate(self, once: float, twice: float) -> float:
        return self.epochs * self.steps_per_epoch / (twice - once)


def steady_epoch_seconds(run: dict) -> float:
    """The median epoch of a run_gan_train result, the first (which traces the step) left out."""
    return statistics.median(run["epoch_seconds"][1:])


def gan_train_rate(path: str, steps_per_epoch: int, *options: str, env: dict | None = None):
    """A timed variant (experiments.timing): epochs -> the steps/s of a run_gan_train run of
    that many epochs, over its median epoch after the first."""

    def rate(epochs: int) -> float:
        run = run_gan_train(path, epochs, *options, env=env)
        return steps_per_epoch / steady_epoch_seconds(run)

    return rate


def child_environment(changes: dict) -> dict:
    """This process's environment with `changes` applied: name -> value, or None to unset."""
    merged = {**os.environ, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def run_gan_train(path: str, epochs: int, *options: str, env: dict | None = None) -> dict:
    """Runs `python -m gan.train --data PATH --epochs EPOCHS [OPTIONS]` with a temporary
    --logdir, in this process's environment changed by `env` (name -> value, or None: unset).
    Returns its wall seconds; seconds from launch to its "Training on" line (printed once the
    networks are built); each epoch's seconds (history.csv); seconds from its last "Epoch:"
    line to its exit; its peak resident memory in MB. Raises RuntimeError with the command's
    last line of stderr if it fails.

    The peak is the child's VmHWM, polled from /proc while it runs: getrusage's
    RUSAGE_CHILDREN would also count this (large) process, whose pages a forked child shares
    until it execs."""
    with tempfile.TemporaryDirectory() as logdir, tempfile.TemporaryFile() as stderr:
        command = [sys.executable, "-m", "gan.train", "--data", path, "--epochs", str(epochs)]
        command += [*options, "--logdir", logdir, "--run", "run"]
        started = time.perf_counter()
        child = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=child_environment(env or {}),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        lines = []  # (seconds since launch, line) of its stdout
        reader = threading.Thread(
            target=lambda: lines.extend(
                (time.perf_counter() - started, line) for line in child.stdout
            )
        )
        reader.start()
        peak_kb = 0
        while child.poll() is None:
            peak_kb = max(peak_kb, _peak_rss_kb(child.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        reader.join()
        if child.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command[1:])}: {_last_line(stderr.read())}")
        with open(Path(logdir, "run", rundir.HISTORY), newline="") as file:
            seconds = [float(row["seconds"]) for row in csv.DictReader(file)]
    return {
        "wall_seconds": wall,
        "to_training_line_seconds": next(t for t, line in lines if line.startswith("Training")),
        "epoch_seconds": seconds,
        "end_seconds": wall - [t for t, line in lines if line.startswith("Epoch:")][-1],
        "peak_rss_mb": peak_kb / 1024,
    }


def probe_startup(path: str) -> dict:
    """Runs experiments.startup on `path`; returns its phases: name -> seconds."""
    command = [sys.executable, "-m", "experiments.startup", "--data", path]
    command += ["--launched", repr(time.time())]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])}: {_last_line(done.stderr)}")
    return json.loads(done.stdout)


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def _peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set) of a process in kB; 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else 0
