"""Checkpoints of a run: save, check and restore the training state (resuming also rolls the
run's per-epoch outputs back to the checkpoint: gan.rundir.roll_back).

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
and, here, fsync'ed. A kill at any moment leaves the previous checkpoint the latest, intact; a
save that fails (a full disk) removes its own files.

Resuming survives damage: each checkpoint on disk (found from its files, also without the
`checkpoint` index file) is tried newest first, and the newest whose every value reads back
(checksums included) is restored; the newer, unreadable ones and the ckpt-N_temp* directories a
kill or a full disk left are then removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np

from gan.errors import UsageError
from gan.rundir import write_atomically

KEEP = 3  # checkpoints kept; older ones are deleted once a newer one is complete
PREFIX = "ckpt"  # ckpt-E: the state after E epochs
GENERATOR = "generator"  # the key of the generator's variables
EMA_GENERATOR = "ema_generator"  # with --ema: the key of the generator's moving average


class CheckpointError(UsageError):
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

        self.skipped: list[str] = []  # see restore_latest
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
        self._finite = None  # see nonfinite_variables
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
        """Writes ckpt-<epochs_done> and makes it the latest. Returns its path prefix.

        If the save fails (a full disk), its files, complete or not, are removed before the
        error propagates: the previous checkpoint stays the latest, and nothing is left over.
        """
        import tensorflow as tf

        self.epoch.assign(epochs_done)
        # The manager appends its own callback (which records the new checkpoint as the latest)
        # after ours, so the files are on disk before anything points at them.
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[_fsync_checkpoint])
        try:
            return self.manager.save(checkpoint_number=epochs_done, options=options)
        except BaseException:
            _remove(self.directory, f"{PREFIX}-{epochs_done}.*", f"{PREFIX}-{epochs_done}_temp*")
            raise

    def restore_latest(self) -> int:
        """Loads the newest checkpoint that reads back entirely into the model and optimizers;
        returns its epoch count (0 if the directory holds no checkpoint at all: a run killed
        before its first one, whose networks as built are exactly what ckpt-0 would hold).

        Each checkpoint on disk is tried newest first (`newest_readable`); `skipped` then holds
        one line for each newer one that could not be read. Raises CheckpointError if none can
        be read (naming each and why), or as `restore` does. Writes nothing.
        """
        try:
            path, self.skipped = newest_readable(self.directory)
        except CheckpointError as error:
            raise CheckpointError(
                f"--resume: {error}; start the run again as a new run (another --run name)"
            ) from None
        return 0 if path is None else self.restore(path)

    def restore(self, path: str | Path) -> int:
        """Loads the checkpoint `path` (a prefix such as .../ckpt-3, in any directory: a
        non-chief worker of a multiworker run restores the chief's) into the model and
        optimizers; returns its epoch count. Raises CheckpointError if it cannot be read, or
        does not match the networks and optimizers (number and shapes of variables) or the
        training images. Writes nothing."""
        import tensorflow as tf

        path = str(path)
        self._check_matches(path)
        try:
            # save_counter, which only the manager uses, does not exist before the first save.
            self.checkpoint.read(path).assert_existing_objects_matched().expect_partial()
        except (tf.errors.OpError, ValueError, AssertionError) as error:
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

    def make_latest(self, epochs_done: int) -> None:
        """Makes ckpt-<epochs_done> (just restored) the latest checkpoint: deletes the files of
        every newer one (restore_latest found them unreadable) and the ckpt-N_temp* directories
        that a kill or a full disk left, and rewrites the `checkpoint` index file (also when
        it was missing) to list the checkpoints kept, oldest first."""
        import tensorflow as tf

        _remove(self.directory, f"{PREFIX}-*_temp*")
        kept = []
        for prefix in reversed(on_disk(self.directory)):
            if _number(prefix) > epochs_done:
                _remove(self.directory, f"{prefix.name}.*")
            elif Path(f"{prefix}.index").is_file():
                kept.append(prefix.name)
        if kept:
            # The manager deletes only checkpoints listed with a time after its last preserved
            # one: list each with its file's time, so that the oldest still go once KEEP newer
            # ones exist.
            times = [(self.directory / f"{name}.index").stat().st_mtime for name in kept]
            # The index is a CheckpointState text proto; TensorFlow's writer of it,
            # tf.compat.v1.train.update_checkpoint_state, logs a deprecation on stderr.
            index = [
                f'model_checkpoint_path: "{kept[-1]}"',
                *(f'all_model_checkpoint_paths: "{name}"' for name in kept),
                *(f"all_model_checkpoint_timestamps: {time!r}" for time in times),
                f"last_preserved_timestamp: {min(times) - 1!r}",
            ]
            write_atomically(self.directory / "checkpoint", ("\n".join(index) + "\n").encode())
        self.manager = tf.train.CheckpointManager(  # reads the index anew
            self.checkpoint, str(self.directory), max_to_keep=KEEP, checkpoint_name=PREFIX
        )

    def nonfinite_variables(self) -> list[str]:
        """Paths of the floating-point variables that hold a NaN or an infinity."""
        import tensorflow as tf

        if self._finite is None:  # one compiled call: reading each variable would cost more
            floats = [
                v
                for variables in self.groups.values()
                for v in variables
                if np.issubdtype(np.dtype(v.dtype), np.floating)
            ]
            finite = tf.function(
                lambda: tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floats])
            )
            self._finite = floats, finite
        floats, finite = self._finite
        return [v.path for v, ok in zip(floats, finite().numpy()) if not ok]

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


def fingerprint(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """SHA-256 (hex) of uint8 images (N, 28, 28), shape included, and of a conditional run's
    labels (N,) if given: a resume on relabelled images is refused too."""
    digest = hashlib.sha256(repr(images.shape).encode())
    digest.update(np.ascontiguousarray(images).data)
    if labels is not None:
        digest.update(np.ascontiguousarray(labels, np.uint8).data)
    return digest.hexdigest()


def on_disk(directory: str | Path) -> list[Path]:
    """Prefixes of the checkpoints in `directory`, newest (most epochs) first: those whose
    files are there and those the `checkpoint` index file names (which may be missing, or
    name a checkpoint whose files are gone). No TensorFlow."""
    directory = Path(directory)
    names = {
        match[1]
        for file in (directory.iterdir() if directory.is_dir() else ())
        if (match := re.fullmatch(rf"({PREFIX}-\d+)\.(index|data-\d+-of-\d+)", file.name))
    }
    index = directory / "checkpoint"
    try:
        listed = re.findall(r'^all_model_checkpoint_paths: "(.*)"$', index.read_text(), re.M)
    except (OSError, UnicodeDecodeError):  # no index file, or a damaged one
        listed = []
    names.update(Path(p).name for p in listed if re.fullmatch(rf"{PREFIX}-\d+", Path(p).name))
    return sorted((directory / name for name in names), key=_number, reverse=True)


def unreadable(prefix: str | Path) -> str | None:
    """Why the checkpoint `prefix` cannot be read back entirely (a missing file, a file cut
    short, a checksum that does not match), or None if every value in it reads back."""
    import tensorflow as tf

    prefix = Path(prefix)
    if not Path(f"{prefix}.index").is_file():
        return f"{prefix.name}.index is missing"
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for key in reader.get_variable_to_dtype_map():
            reader.get_tensor(key)  # checks the value's checksum
    except Exception as error:  # noqa: BLE001 -- damage surfaces as OpError, IndexError, ...
        return _first_line(error)
    return None


def newest_readable(directory: str | Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint in `directory` that reads back entirely, and one line for each
    newer one that does not (naming it and why). (None, []) if there are no checkpoints.
    Raises CheckpointError, naming each checkpoint and why, if none can be read."""
    problems = []
    for prefix in on_disk(directory):
        problem = unreadable(prefix)
        if problem is None:
            return prefix, [
                f"cannot read checkpoint {skipped}; falling back to {prefix.name}"
                for skipped in problems
            ]
        problems.append(f"{prefix.name} ({problem})")
    if problems:
        raise CheckpointError(f"no checkpoint in {directory} can be read: {'; '.join(problems)}")
    return None, []


_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"  # tf.train.Checkpoint's key of a variable's value


def _fsync_checkpoint(save_path: str) -> None:
    directory = Path(save_path).parent
    for path in [*directory.glob(Path(save_path).name + ".*"), directory]:
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _remove(directory: Path, *patterns: str) -> None:
    """Deletes the files and directories in `directory` that match any of `patterns`."""
    for pattern in patterns:
        for path in directory.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _number(prefix: Path) -> int:
    """ckpt-12 -> 12."""
    return int(prefix.name.rsplit("-", 1)[1])


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
