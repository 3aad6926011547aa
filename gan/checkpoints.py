"""Checkpoints of a run, and what resuming one needs: save, check and restore the training state,
and roll the run's per-epoch outputs back to the checkpoint.

LOGDIR/RUN/checkpoints/ckpt-E.{index,data-00000-of-00001} holds the state after E epochs
(ckpt-0: before the first step), managed by tf.train.CheckpointManager (the newest KEEP stay):

- every variable of both networks: weights and the dropout layers' random-number states;
- with --ema, every variable of the generator's moving average (`ema_generator`);
- every other variable of the GAN: the states of its noise (and --augment) SeedGenerators;
- every variable of both Adam optimizers: step counts, learning rates, first and second moments;
- E, and a SHA-256 of the training images (a resume on other images is refused).

Nothing else is needed for an exact resume at an epoch boundary: epoch e's data order is a
stateless shuffle seeded by (seed, e) (gan.data.make_dataset), and the metrics are running means
that Keras resets when an epoch begins.

The variables are listed one by one: `tf.train.Checkpoint(model=gan)` reaches the weights and
the optimizers but not the random-number states, because a keras.random.SeedGenerator is not a
trackable object, so it would restore neither dropout's masks nor the noise. Listing every
variable of the GAN (Keras tracks them all) and of its optimizers covers those and any state
the GAN gains later; tests/test_checkpoints.py checks both facts.

A checkpoint is atomic: the manager's `checkpoint` file names the latest checkpoint and is
replaced (write to a temporary file, rename) only after the new checkpoint's files are complete
and, here, fsync'ed. A kill at any moment leaves the previous checkpoint the latest, intact.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from gan.config import ConfigError

KEEP = 3  # checkpoints kept; older ones are deleted once a newer one is complete
DIRECTORY = "checkpoints"  # RUN/checkpoints/
PREFIX = "ckpt"  # ckpt-E: the state after E epochs
GENERATOR = "generator"  # the key of the generator's variables
EMA_GENERATOR = "ema_generator"  # with --ema: the key of the generator's moving average


class CheckpointError(ConfigError):
    """A run cannot be resumed from its checkpoints; the message says why and what to do."""


class Checkpoints:
    """The checkpoints of one run: `save(epochs_done)` and `restore_latest()`.

    model: a compiled gan.gan.GAN. GAN.compile has built its optimizers, so their variables
    exist and a checkpoint can be restored before training. (Building them again would
    duplicate a LossScaleOptimizer's own variables.)
    images_sha256: hex digest of the training images (`fingerprint(images)`).
    """

    def __init__(self, model, directory: str | Path, images_sha256: str):
        import tensorflow as tf

        networks = {GENERATOR: model.generator, "discriminator": model.discriminator}
        if model.ema_generator is not None:
            networks[EMA_GENERATOR] = model.ema_generator
        in_networks = {id(v) for net in networks.values() for v in net.variables}
        # name -> variables, in a fixed order; the checkpoint's keys are name/index.
        self.groups = {
            **{name: list(net.variables) for name, net in networks.items()},
            "gan": [v for v in model.variables if id(v) not in in_networks],  # noise seed state
            "d_optimizer": list(model.d_optimizer.variables),
            "g_optimizer": list(model.g_optimizer.variables),
        }
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.images_sha256 = images_sha256
        self._saved_sha256 = tf.Variable(images_sha256.encode(), trainable=False)
        self.directory = Path(directory)
        self.checkpoint = tf.train.Checkpoint(
            epoch=self.epoch, images_sha256=self._saved_sha256, **self.groups
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.directory), max_to_keep=KEEP, checkpoint_name=PREFIX
        )

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest complete checkpoint, or None."""
        return self.manager.latest_checkpoint

    def save(self, epochs_done: int) -> str:
        """Writes ckpt-<epochs_done> and makes it the latest. Returns its path prefix."""
        import tensorflow as tf

        self.epoch.assign(epochs_done)
        # The manager appends its own callback (which records the new checkpoint as the latest)
        # after ours, so the files are on disk before anything points at them.
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[_fsync_checkpoint])
        return self.manager.save(checkpoint_number=epochs_done, options=options)

    def restore_latest(self) -> int:
        """Loads the newest checkpoint into the model and optimizers; returns its epoch count.

        Raises CheckpointError if there is no checkpoint or it does not match the networks
        and optimizers (number and shapes of variables) or the training images. Writes nothing.
        """
        import tensorflow as tf

        path = self.latest
        if path is None:
            raise CheckpointError(
                f"--resume: no checkpoint in {self.directory}; the run stopped before its "
                f"first checkpoint, so start it again as a new run (another --run name)"
            )
        self._check_matches(path)
        try:
            # save_counter, which only the manager uses, does not exist before the first save.
            self.checkpoint.read(path).assert_existing_objects_matched().expect_partial()
        except (tf.errors.OpError, ValueError, AssertionError) as error:  # e.g. a damaged file
            raise CheckpointError(
                f"--resume: cannot read checkpoint {path} ({_first_line(error)})"
            ) from None
        saved_sha256 = self._saved_sha256.numpy().decode()
        if saved_sha256 != self.images_sha256:
            raise CheckpointError(
                f"--resume: the training images differ from the ones {path} was trained on "
                f"(SHA-256 {self.images_sha256[:12]}... instead of {saved_sha256[:12]}...); "
                f"resume with the same --data, --dataset and --limit"
            )
        return int(self.epoch.numpy())

    def nonfinite_variables(self) -> list[str]:
        """Paths of the floating-point variables that hold a NaN or an infinity."""
        return [
            v.path
            for variables in self.groups.values()
            for v in variables
            if np.issubdtype(np.dtype(v.dtype), np.floating) and not np.isfinite(v.numpy()).all()
        ]

    def _check_matches(self, path: str) -> None:
        import tensorflow as tf

        try:
            shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
        except (tf.errors.OpError, ValueError) as error:
            raise CheckpointError(
                f"--resume: cannot read checkpoint {path} ({_first_line(error)})"
            ) from None
        saved = {
            key.removesuffix(_VALUE_SUFFIX): tuple(shape)
            for key, shape in shapes.items()
            if key.endswith(_VALUE_SUFFIX) and key.split("/")[0] in self.groups
        }
        expected = {
            f"{name}/{index}": (tuple(v.shape), v.path)
            for name, variables in self.groups.items()
            for index, v in enumerate(variables)
        }
        problems = [
            f"{path_}: shape {saved[key]} in the checkpoint, {shape} here"
            for key, (shape, path_) in expected.items()
            if key in saved and saved[key] != shape
        ]
        missing = [path_ for key, (_, path_) in expected.items() if key not in saved]
        if missing:
            problems.append(f"not in the checkpoint: {', '.join(missing[:3])}")
        extra = [key for key in saved if key not in expected]
        if extra:
            problems.append(f"only in the checkpoint: {', '.join(extra[:3])}")
        if problems:
            more = f"; {len(problems) - 2} more" if len(problems) > 2 else ""
            raise CheckpointError(
                f"--resume: checkpoint {path} does not match the configured networks "
                f"({'; '.join(problems[:2])}{more}); the networks are built from the run's "
                f"config.json and the code, which must be the ones the run was trained with"
            )


def sampler_key(config) -> str:
    """The checkpoint key of the network a run draws samples from (GAN.sampler): the moving
    average with --ema, else the generator."""
    return EMA_GENERATOR if config.ema else GENERATOR


def fingerprint(images: np.ndarray) -> str:
    """SHA-256 (hex) of uint8 images (N, 28, 28), shape included."""
    digest = hashlib.sha256(repr(images.shape).encode())
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def latest_exists(directory: str | Path) -> bool:
    """Whether a checkpoint manager has recorded a checkpoint in `directory` (no TensorFlow)."""
    return (Path(directory) / "checkpoint").is_file()


def roll_back(run_dir: str | Path, epochs_done: int, history: Path, samples: Path) -> None:
    """Removes every per-epoch output of epochs after `epochs_done` that a run wrote before it
    was killed: TensorBoard events with step > epochs_done (in every events file under
    run_dir), rows of the `history` CSV and `samples` grids epoch_NNN.png with NNN >
    epochs_done. A resumed run then writes those epochs again, once.

    Every change replaces a file atomically, so a kill during the roll-back leaves each file
    either as it was or rolled back, and the next resume finishes the job.
    """
    run_dir = Path(run_dir)
    for stale in run_dir.rglob(".partial-*"):  # left by a roll-back that was killed
        stale.unlink()
    for events in sorted(run_dir.rglob("*tfevents*")):
        _drop_events_after(events, epochs_done)
    if history.exists():
        _drop_history_after(history, epochs_done)
    for grid in samples.glob("epoch_*.png") if samples.is_dir() else ():
        if int(grid.stem.removeprefix("epoch_")) > epochs_done:
            grid.unlink()


def write_atomically(path: Path, content: bytes) -> None:
    """Replaces the file `path` with `content`, keeping its permissions, so that a kill leaves
    either the old or the new file.

    The temporary name starts with .partial- (and never contains 'tfevents', so TensorBoard
    does not read it); roll_back deletes any that a kill left behind.
    """
    handle, temporary = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        shutil.copymode(path, temporary)  # mkstemp makes it private (0600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"  # tf.train.Checkpoint's key of a variable's value


def _fsync_checkpoint(save_path: str) -> None:
    directory = Path(save_path).parent
    for path in [*directory.glob(Path(save_path).name + ".*"), directory]:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _drop_events_after(path: Path, epochs_done: int) -> None:
    """Rewrites an events file without the summaries of steps > epochs_done and without a
    record cut short by a kill; leaves the file alone if it has neither."""
    from tensorboard.compat.proto import event_pb2

    raw = path.read_bytes()
    kept = bytearray()
    for start, end, payload in _tfrecords(raw):
        event = event_pb2.Event.FromString(payload)
        if not (event.HasField("summary") and event.step > epochs_done):
            kept += raw[start:end]
    if len(kept) != len(raw):
        write_atomically(path, bytes(kept))


def _tfrecords(raw: bytes):
    """(start, end, payload) of each complete TFRecord in `raw`: u64 length, u32 length CRC,
    payload, u32 payload CRC. Stops at a record that is cut short."""
    start = 0
    while start + 12 <= len(raw):
        (length,) = struct.unpack_from("<Q", raw, start)
        end = start + 12 + length + 4
        if end > len(raw):
            return
        yield start, end, raw[start + 12 : start + 12 + length]
        start = end


def _drop_history_after(path: Path, epochs_done: int) -> None:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        fields = reader.fieldnames
    kept = [row for row in rows if int(row["epoch"]) <= epochs_done]
    if len(kept) != len(rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)  # as callbacks.History writes it
        writer.writeheader()
        writer.writerows(kept)
        write_atomically(path, text.getvalue().encode())


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
