"""Everything that watches training: console, TensorBoard, sample grids, saved files.

Each callback reads the GAN (`self.model`) and the epoch's logs; none changes training, though
the last three may stop it (NaN guard, checkpoints, test signal hook; see gan.safety).
Epochs are numbered from 1 here, as in the textbook's output and the PNG names.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from gan import rundir
from gan.clusters import sample_sequence
from gan.config import parse_step_range, shown
from gan.data import to_uint8
from gan.evaluation import format_line, log_scalars
from gan.images import make_grid, save_png
from gan.models import with_labels
from gan.safety import NonFiniteLoss
from gan.sampling import scored_samples

GRID_ROWS = GRID_COLS = 5
GRID_SCALE = 3  # 5x5 grid of 28 px digits -> 456 px square: big enough to judge by eye
# A conditional run's grid: one row per class (the first CLASS_GRID_ROWS classes), the same
# CLASS_GRID_COLS noise vectors in every row; 10x10 at scale 2 is 604 px square.
CLASS_GRID_ROWS = CLASS_GRID_COLS = 10
CLASS_GRID_SCALE = 2


class ConsoleProgress(keras.callbacks.Callback):
    """A progress bar with the running losses (on a terminal), then one summary line an epoch:
    `Epoch:3 d_loss:0.6012 g_loss:0.9155 d_real:0.641 d_fake:0.367 (2.1 s)`."""

    def __init__(self, epochs: int, steps_per_epoch: int, stream=None):
        super().__init__()
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream or sys.stdout
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        if self.stream.isatty():
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self.stream)
            # All metrics are running means over the epoch already: show them as they are.
            self.bar = keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=_METRICS)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(batch + 1, values=[(k, float(v)) for k, v in (logs or {}).items()])

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        values = " ".join(f"{name}:{float(logs[name]):.4f}" for name in _METRICS if name in logs)
        print(f"Epoch:{epoch + 1} {values} ({seconds:.1f} s)", file=self.stream, flush=True)


class ScalarSummaries(keras.callbacks.Callback):
    """Writes every epoch-end metric (d_loss, g_loss, d_real, d_fake) as a TensorBoard scalar,
    at step = epoch number."""

    def __init__(self, writer):
        super().__init__()
        self.writer = writer

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.scalar(name, float(value), step=epoch + 1)
        self.writer.flush()


class SampleGrids(keras.callbacks.Callback):
    """Draws the generator's images for one fixed noise batch as a grid after epoch 1,
    every `every` epochs and after the last epoch: `samples/epoch_NNN.png` and a TensorBoard
    image `samples` at step = epoch number. The noise never changes, so successive grids
    show the same latent points as training progresses.

    noise: float32 (rows * cols, noise_dim), row by row; labels: None, or int32 (rows * cols,)
    for a conditional generator; shape: (rows, cols, scale) of the grid (default: 5x5)."""

    def __init__(
        self,
        noise: np.ndarray,
        samples_dir: Path,
        writer,
        every: int,
        epochs: int,
        labels: np.ndarray | None = None,
        shape: tuple[int, int, int] = (GRID_ROWS, GRID_COLS, GRID_SCALE),
    ):
        super().__init__()
        self.noise = noise
        self.labels = labels
        self.shape = shape
        self.samples_dir = Path(samples_dir)
        self.writer = writer
        self.every = every
        self.epochs = epochs

    @classmethod
    def for_run(
        cls, config, samples_dir: Path, writer, every: int, epochs: int, clusters=None
    ) -> SampleGrids:
        """The grids of a run (a resolved gan.config.Config), noise from its --seed: 5x5
        samples (--self-condition: their clusters drawn at their shares of `clusters`, the
        training images' cluster ids, as gan.generate draws them), or for --conditional one
        row per class (the first CLASS_GRID_ROWS), each row with the same CLASS_GRID_COLS
        noise vectors, so a column shows one latent point as each class, and the slider
        each class across epochs."""
        rng = np.random.default_rng(config.seed)
        if not config.conditional:
            noise = rng.standard_normal((GRID_ROWS * GRID_COLS, config.noise_dim), np.float32)
            labels = None
            if config.self_condition:
                count = GRID_ROWS * GRID_COLS
                labels = sample_sequence(clusters, config.self_condition, count).astype(np.int32)
            return cls(noise, samples_dir, writer, every, epochs, labels)
        rows = min(CLASS_GRID_ROWS, config.num_classes)
        noise = rng.standard_normal((CLASS_GRID_COLS, config.noise_dim), np.float32)
        labels = np.repeat(np.arange(rows, dtype=np.int32), CLASS_GRID_COLS)
        shape = (rows, CLASS_GRID_COLS, CLASS_GRID_SCALE)
        return cls(np.tile(noise, (rows, 1)), samples_dir, writer, every, epochs, labels, shape)

    def draw(self, generator) -> np.ndarray:
        """uint8 grid image of `generator`'s samples (inference mode) for the fixed noise."""
        images = to_uint8(generator(with_labels(self.noise, self.labels), training=False))
        rows, cols, scale = self.shape
        return make_grid(images, rows, cols, scale=scale)

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        if number == 1 or number % self.every == 0 or number == self.epochs:
            self.samples_dir.mkdir(exist_ok=True)
            grid = self.draw(self.model.sampler)
            save_png(grid, self.samples_dir / rundir.sample_grid_name(number))
            with self.writer.as_default():
                tf.summary.image("samples", grid[None, :, :, None], step=number)
            self.writer.flush()


class HParams(hparams_api.KerasCallback):
    """Logs the run's options to TensorBoard's HParams plugin (a session start when training
    begins, a session end with status "success" when it ends), so the HParams dashboard lists
    every run with its options beside its final metrics: the last value of each scalar in the
    run (d_loss, g_loss, d_real, d_fake and any scalar added later).

    options: name -> bool, int, float, str or layer widths (a tuple, logged as on the command
    line: 256,512, by gan.config.shown); None values (options left unset) are left out.
    trial_id: the name the dashboard shows for the run (its "Trial ID"), e.g. the run's name.
    No experiment summary (`hparams_config`) is written on purpose: TensorBoard would take the
    option list from one arbitrary run's summary, hiding options that other runs have. Without
    it, TensorBoard collects the options of all runs and takes every scalar as a metric.
    """

    def __init__(self, writer, options: dict, trial_id: str):
        options = {name: shown(value) for name, value in options.items() if value is not None}
        super().__init__(writer, options, trial_id)
        self.writer = writer

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.writer.flush()  # a TensorBoard watching the run lists it at once


class Profile(keras.callbacks.Callback):
    """Records a TensorFlow profiler trace of training steps FIRST to LAST (counted from 1
    over the whole run) into `run_dir`/plugins/profile/, for TensorBoard's profile tab (which
    needs `pip install tensorboard-plugin-profile`); nothing if `steps` is None. Each step is
    marked as one, so the profile's overview shows the time per step.

    steps: "FIRST,LAST" as validated by Config.profile_steps, or None. Needs one step per
    compiled call (Config.resolved sees to that), so that each batch callback is one step.
    """

    def __init__(self, run_dir: Path, steps: str | None, steps_per_epoch: int):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.steps_per_epoch = steps_per_epoch
        # (0, 0) never matches a step: steps are counted from 1.
        self.first, self.last = parse_step_range(steps) if steps else (0, 0)
        self.step_trace = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch  # counted from 0, also when a resumed run starts later

    def on_train_batch_begin(self, batch, logs=None):
        self.step = self.epoch * self.steps_per_epoch + batch + 1
        if self.step == self.first:
            tf.profiler.experimental.start(str(self.run_dir))
        if self.first <= self.step <= self.last:
            self.step_trace = tf.profiler.experimental.Trace("train", step_num=self.step, _r=1)
            self.step_trace.__enter__()

    def on_train_batch_end(self, batch, logs=None):
        if self.step_trace is not None:
            self.step_trace.__exit__(None, None, None)
            self.step_trace = None
        if self.step == self.last:
            tf.profiler.experimental.stop()


class Evaluation(keras.callbacks.Callback):
    """Scores the generator with a gan.evaluation.Evaluator every `every` epochs and after the
    last: as many samples as the evaluator's held-out real images, always from noise seed 0
    (so the last evaluation equals `python -m gan.evaluate --run`); a conditional generator's
    for every class in turn (gan.generate's default labels), scored with their labels; a
    --self-condition one's for `clusters` (gan.clusters.sample_sequence: each cluster at
    its share, one per held-out real image), scored as an unconditional generator's.
    Writes TensorBoard scalars eval/* and eval_real/* at step = epoch number, appends a record
    to `eval.json` and prints one line. A record of this epoch or a later one from an earlier
    training session (a run killed after its last checkpoint, then resumed) is replaced, as
    gan.rundir.roll_back does for the other per-epoch outputs; records of `python -m
    gan.evaluate` are kept."""

    def __init__(self, evaluator, run_dir: Path, writer, every: int, epochs: int, clusters=None):
        super().__init__()
        self.evaluator = evaluator
        self.clusters = clusters
        self.eval_path = Path(run_dir) / rundir.EVALUATIONS
        self.writer = writer
        self.every = every
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        if number % self.every == 0 or number == self.epochs:
            images, labels = scored_samples(
                self.model.sampler, self.evaluator.held_out_count, 0, self.clusters
            )
            result = self.evaluator.evaluate(images, labels)
            log_scalars(self.writer, result, step=number)
            rundir.append_record(
                self.eval_path,
                {"samples": "training", "epoch": number, "seed": 0, **result},
                replaces=lambda r: r["samples"] == "training" and r["epoch"] >= number,
            )
            print(f"Eval epoch {number}: {format_line(result)}", flush=True)


class SaveNetworks(keras.callbacks.Callback):
    """Saves the trained networks as `generator.keras` (the network samples come from: with
    --ema the generator's moving average, and then the trained generator itself as
    `generator_raw.keras`) and `discriminator.keras`."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)

    def on_train_end(self, logs=None):
        self.model.sampler.save(self.run_dir / rundir.GENERATOR)
        if self.model.ema_generator is not None:
            self.model.generator.save(self.run_dir / rundir.GENERATOR_RAW)
        self.model.discriminator.save(self.run_dir / rundir.DISCRIMINATOR)


class History(keras.callbacks.Callback):
    """Appends one row per epoch (epoch, d_loss, g_loss, d_real, d_fake, seconds) to a CSV
    file as training goes, and at the end plots the losses of every row to a PNG."""

    def __init__(self, csv_path: Path, plot_path: Path):
        super().__init__()
        self.csv_path = Path(csv_path)
        self.plot_path = Path(plot_path)

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{name: float(logs[name]) for name in _METRICS}}
        row["seconds"] = round(time.perf_counter() - self.started, 3)
        new_file = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def on_train_end(self, logs=None):
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on training machines
        from matplotlib import pyplot as plt

        with open(self.csv_path, newline="") as file:
            rows = list(csv.DictReader(file))
        epochs = [int(row["epoch"]) for row in rows]
        figure, axes = plt.subplots(figsize=(7, 4))
        for name in ("d_loss", "g_loss"):
            axes.plot(epochs, [float(row[name]) for row in rows], label=name)
        axes.set(xlabel="epoch", ylabel="loss (binary cross-entropy)")
        axes.legend()
        figure.tight_layout()
        figure.savefig(self.plot_path, dpi=100)
        plt.close(figure)


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises NonFiniteLoss as soon as a loss is NaN or infinite (checked after every step, or
    every call with several steps per call) and, at an epoch's end, if any variable of the
    checkpoint is: weights can turn NaN while the losses stay finite (in a compiled step on CPU,
    the fused MatMul+BiasAdd+Relu kernel maps NaN to 0). Put it first: the epoch's summaries,
    history row and checkpoint are then never written, so the last good checkpoint stays the
    latest.

    checkpoints: the run's gan.checkpoints.Checkpoints (its variables and latest checkpoint).
    """

    async_safe = True  # reads logs only: Keras may run it beside the next step

    def __init__(self, checkpoints, steps_per_epoch: int):
        super().__init__()
        self.checkpoints = checkpoints
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # The logs are running means over the epoch: the first non-finite one is this step's.
        bad = [f"{name} is {float(logs[name])}" for name in _LOSSES if not _finite(logs, name)]
        if bad:
            where = f"epoch {self.epoch + 1}, step {batch + 1} of {self.steps_per_epoch}"
            self._stop(f"{' and '.join(bad)} at {where}")

    def on_epoch_end(self, epoch, logs=None):
        variables = self.checkpoints.nonfinite_variables()
        if variables:
            self._stop(f"{', '.join(variables[:3])} became non-finite during epoch {epoch + 1}")

    def _stop(self, what):
        raise NonFiniteLoss(
            f"{what}: training diverged and was stopped; the last "
            f"good checkpoint is still the latest ({self.checkpoints.latest}); start a new run "
            f"with a lower --lr or another --seed"
        )


class SendSignal(keras.callbacks.Callback):
    """Test hook (gan.safety.SignalHook): sends a signal to this process once, after a given
    global step or at a given epoch's end. Put it after the callbacks that write per-epoch
    outputs and before SaveCheckpoints."""

    def __init__(self, hook, steps_per_epoch: int):
        super().__init__()
        self.hook = hook
        self.steps_per_epoch = steps_per_epoch
        self.sent = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.hook.step is not None:
            self._send_if(self.epoch * self.steps_per_epoch + batch + 1 >= self.hook.step)

    def on_epoch_end(self, epoch, logs=None):
        self._send_if(self.hook.epoch == epoch + 1)

    def _send_if(self, due):
        if due and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.hook.signum)


class SaveCheckpoints(keras.callbacks.Callback):
    """Saves a checkpoint after every `every`-th epoch, or, if `every` is None, after the first
    epoch that ends `interval` seconds or more after the last save (or the start of training);
    also after the last epoch, and after the epoch during which a stop was requested
    (gan.safety.StopRequest), then stops training.

    The checkpoint is an epoch's commit point: put this callback after every callback that
    writes per-epoch outputs, so that a resumed run can drop whatever was written after the
    latest checkpoint (gan.rundir.roll_back) and write it again exactly once.
    """

    def __init__(self, checkpoints, epochs: int, stop_request, every=None, interval=60.0):
        super().__init__()
        self.checkpoints = checkpoints
        self.epochs = epochs
        self.stop_request = stop_request
        self.every = every
        self.interval = interval

    def on_train_begin(self, logs=None):
        self.saved_at = time.monotonic()  # training starts from a checkpoint just made or read

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        stopping = self.stop_request.signum is not None
        if self.every is not None:
            due = done % self.every == 0
        else:
            due = time.monotonic() - self.saved_at >= self.interval
        if stopping or due or done == self.epochs:
            self.checkpoints.save(done)
            self.saved_at = time.monotonic()
        if stopping:
            self.model.stop_training = True


def _finite(logs, name):
    return name not in (logs or {}) or np.isfinite(float(logs[name]))


_LOSSES = ("d_loss", "g_loss")
_METRICS = ("d_loss", "g_loss", "d_real", "d_fake")
