"""Train the GAN: `python -m gan.train --epochs 100` (see --help).

The command line is a thin layer over `train(config, run_dir)`: it validates every option and
loads the images before anything is written, and turns bad input into a one-line error with
exit status 2. A run writes LOGDIR/RUN/:

    config.json                   every option, with automatic choices resolved
    events.out.tfevents.*         TensorBoard: d_loss, g_loss, d_real, d_fake, sample grids,
                                  the options (HParams)
    plugins/profile/              with --profile-steps: a profiler trace (TensorBoard's profile tab)
    samples/epoch_NNN.png         5x5 grids of G(fixed noise); --conditional: a row per class
    clusters.npz                  with --self-condition: each training image's cluster
    history.csv, losses.png       per-epoch metrics and a plot of the losses
    checkpoints/                  the training state after some epochs (gan.checkpoints)
    generator.keras, discriminator.keras   the trained networks

`--resume` continues a run from its latest checkpoint (see docs/checkpoints.md; a multiworker
run: on every worker, docs/distributed.md). Exit status: 0 done, 1 training diverged (NaN/Inf),
the disk is full or another worker was lost, 2 bad input, 128 + signal number after Ctrl-C
(130) or SIGTERM (143).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from gan import checkpoints, cli, data, distribute, rundir, safety
from gan.cli import Parser, add_verbose_argument, data_source, positive_number
from gan.config import CHANGEABLE_ON_RESUME, Config, flag, parse_step_range
from gan.errors import UsageError

PROG = "python -m gan.train"
JOIN_TIMEOUT = 600.0  # seconds a worker of a multiworker run waits for the others to join
_CHIEF_FAILED = -1  # the epoch a multiworker run's chief sends the others when it cannot resume
_SHARED_LOGDIR = "every worker must see --logdir at the same path, on a file system they share"


def train(
    config: Config,
    run_dir: Path,
    images: np.ndarray | None = None,
    resume: bool = False,
    evaluator=None,
    labels: np.ndarray | None = None,
    chief_run_dir: Path | None = None,
):
    """Trains the GAN `config` describes, writing the run to `run_dir`; returns the trained GAN.

    resume=False: a new run; `run_dir` must not exist. resume=True: continues the run in
    `run_dir` from its latest checkpoint; `config` is the run's saved config (see
    Config.resumed_with), its `epochs` may be larger than before.
    images: uint8 (N, 28, 28), already loaded and checked by the caller; loaded from
    config.dataset / config.data / config.limit if None (see load_data). labels: uint8 (N,),
    the images' classes: needed with images for a --conditional run, ignored otherwise.
    Trains under config.strategy (every worker of a multiworker run calls this).
    evaluator: the gan.evaluation.Evaluator that config.eval_every uses; if None, one is built
    for config.dataset / config.data (all of its images, not only the first --limit).
    chief_run_dir: given to a non-chief worker of a multiworker run, which writes `run_dir`,
    its scratch directory (gan.distribute.output_dir), as a new run: on resume it restores the
    checkpoint the chief resumes from, read from chief_run_dir (the run directory, on a file
    system every worker shares), which it never writes (see Training).

    Holds the run directory's lock (gan.rundir.RunLock) while it writes there. Raises
    UsageError before writing anything if another process writes `run_dir` (RunInUse), the
    run directory cannot be created, or no checkpoint can be resumed (CheckpointError);
    safety.NonFiniteLoss if training diverges; safety.Interrupted after SIGINT or SIGTERM,
    once the current epoch is checkpointed; OSError (or TensorFlow's ResourceExhaustedError)
    if the disk is full, the latest complete checkpoint staying the latest.
    """
    return Training(config, run_dir, images, resume, evaluator, labels, chief_run_dir).run()


def load_data(config: Config) -> tuple[np.ndarray, np.ndarray | None]:
    """The training images of config.dataset / data / limit / source, uint8 (N, 28, 28), and
    for --conditional their labels, uint8 (N,) (None otherwise). Raises DataError; for a
    conditional run on images without labels, one naming what was looked for."""
    if not config.conditional:
        return data.load(config.dataset, config.data, config.limit, config.source), None
    try:
        return data.load_labelled(config.dataset, config.data, config.limit, config.source)
    except data.LabelError as error:
        raise data.LabelError(f"--conditional needs the class of every image: {error}") from None


class Training:
    """`train` in two parts: construction checks everything, locks the run directory
    (gan.rundir.RunLock) and prepares it (raising UsageError before writing anything if the
    run cannot go ahead), `run()` trains. The lock is held until `run()` returns or raises.

    A multiworker run resumes as keras.callbacks.BackupAndRestore does: the chief's
    checkpoint is the state, and every worker restores it. The chief locks its run directory
    and restores the newest readable checkpoint, as any run does, then tells the other workers
    which epoch it restored (gan.distribute.chief_value, a collective operation): no worker
    chooses on its own, so a damaged newest checkpoint cannot split them. Each of them
    restores that checkpoint from the chief's directory, and all learn whether every worker
    succeeded (gan.distribute.any_worker). Only then does the chief write: it removes the
    checkpoints it skipped and rolls the run back. So the others read a directory nobody
    writes, and if any worker fails (or the chief, which then sends -1), every worker raises
    UsageError, nothing written, instead of waiting for the others in the first step.
    """

    def __init__(
        self,
        config,
        run_dir,
        images=None,
        resume=False,
        evaluator=None,
        labels=None,
        chief_run_dir=None,
    ):
        # TensorFlow is imported here, not at the top, so that `--help` and bad options answer
        # instantly instead of after the seconds TensorFlow takes to load.
        import keras
        import tensorflow as tf

        from gan.gan import build_gan

        # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything.
        strategy = distribute.make_strategy(config.strategy)
        distribute.check_batch_split(config.batch_size, strategy.num_replicas_in_sync)
        self.run_dir = run_dir = Path(run_dir)
        if images is None:
            images, labels = load_data(config)
        self.images, self.labels = images, labels if config.conditional else None
        if config.conditional and (labels is None or len(labels) != len(images)):
            raise ValueError("a --conditional run needs one label for each of its images")
        # --self-condition: the clusters are the labels (None: an unconditional run)
        self.clusters = self._clusters(config, resume, chief_run_dir)
        if self.clusters is not None:
            self.labels = self.clusters
        has_gpu = bool(tf.config.list_physical_devices("GPU"))
        classes = None if self.labels is None else int(self.labels.max()) + 1
        self.config = config = config.resolved(len(self.images), has_gpu, classes)
        self.evaluator = evaluator
        if config.eval_every and config.conditional:
            _check_evaluable_classes(config.num_classes)
        if config.eval_every and evaluator is None:
            from gan.evaluation import Evaluator

            try:  # may train the classifier; reads only its own random state, never the global
                self.evaluator = Evaluator.for_dataset(
                    config.dataset, config.data, None, config.source
                )
            except data.DataError as error:  # e.g. no label files: bad input, nothing written
                raise UsageError(f"--eval-every: {error}") from None
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)  # weights, dropout; noise, shuffling: below
        with strategy.scope():
            # Keras turns XLA off under op determinism (with a warning): say so up front.
            self.model = build_gan(
                config.replace(jit=False) if config.deterministic else config,
                steps_per_epoch=config.steps_per_epoch(len(self.images)),
            )
        self.checkpoints = checkpoints.Checkpoints(
            self.model,
            run_dir / rundir.CHECKPOINTS,
            checkpoints.fingerprint(self.images, self.labels),
        )
        self.history_csv, self.samples_dir = run_dir / rundir.HISTORY, run_dir / rundir.SAMPLES
        self.notices = []  # lines for the user: checkpoints skipped, damaged files moved aside
        if not resume:
            self._start()
        elif chief_run_dir is None:
            self._resume(strategy)
        else:
            self._resume_from_chief(strategy, Path(chief_run_dir))

    def _clusters(self, config, resume: bool, chief_run_dir):
        """--self-condition: the cluster of each training image, uint8 (N,); None without it.
        A resumed run reads those it started with (its own clusters file, or for a
        multiworker run's other workers the chief's); a new run, or one killed before it
        wrote them, clusters its images (gan.clusters.kmeans; _start and _resume write them).
        Raises UsageError for a damaged clusters file or more clusters than images."""
        from gan import clusters

        count = config.self_condition
        if not count:
            return None
        if count > len(self.images):
            raise UsageError(
                f"--self-condition {count}: more clusters than the {len(self.images)} "
                "training images"
            )
        path = Path(chief_run_dir or self.run_dir) / rundir.CLUSTERS
        if resume and path.exists():
            return clusters.load(path, count, len(self.images))
        return clusters.kmeans(self.images, count)

    def _save_clusters(self):
        from gan import clusters

        path = self.run_dir / rundir.CLUSTERS
        if self.clusters is not None and not path.exists():
            clusters.save(path, self.clusters)

    def _start(self):
        """A new run: creates and locks run_dir, writes config.json, the clusters of a
        --self-condition run and ckpt-0."""
        self.lock = rundir.RunLock(self.run_dir, create=True)
        with self._released_on_error():
            rundir.write_config(self.run_dir, self.config)
            self._save_clusters()
            self.epochs_done = 0
            self.checkpoints.save(0)  # so that a run killed in its first epoch can resume

    def _resume(self, strategy):
        """Locks run_dir, restores its newest readable checkpoint and rolls the run back to it.
        The chief of a multiworker run lets the other workers restore the same checkpoint in
        between (see the class docstring), so that nothing is written unless all succeed."""
        config, run_dir = self.config, self.run_dir
        workers = config.strategy == "multiworker"
        try:
            self.lock = rundir.RunLock(run_dir)
            with self._released_on_error():
                self.epochs_done = self.checkpoints.restore_latest()
                self.notices += self.checkpoints.skipped
                if self.epochs_done >= config.epochs:
                    raise UsageError(
                        f"--resume: {run_dir} has trained {self.epochs_done} epochs already; "
                        f"pass --epochs N with N > {self.epochs_done} to train it longer"
                    )
        except Exception:
            if workers:  # they wait for the epoch; the chief's own error is the one to report
                with contextlib.suppress(Exception):
                    distribute.chief_value(strategy, _CHIEF_FAILED)
            raise
        with self._released_on_error():
            if workers:
                distribute.chief_value(strategy, self.epochs_done)
                if distribute.any_worker(strategy, failed=False):
                    raise UsageError(
                        f"--resume: another worker could not restore the checkpoint of epoch "
                        f"{self.epochs_done} (see its error); {_SHARED_LOGDIR}"
                    )
            self.checkpoints.make_latest(self.epochs_done)
            self.notices += rundir.roll_back(run_dir, self.epochs_done)
            rundir.write_config(run_dir, config)
            self._save_clusters()  # a run killed before it wrote them clustered again
            if self.checkpoints.latest is None:  # killed before its first checkpoint
                self.checkpoints.save(0)

    def _resume_from_chief(self, strategy, chief_run_dir: Path):
        """A non-chief worker's --resume of a multiworker run: restores the checkpoint the chief
        restored, read from the chief's run directory, which the chief does not write until
        every worker has answered. Writes only its own run_dir (its scratch directory,
        gan.distribute.output_dir), which it starts as a new run."""
        self.lock = rundir.RunLock(self.run_dir, create=True)
        with self._released_on_error():
            rundir.write_config(self.run_dir, self.config)
            self.epochs_done = distribute.chief_value(strategy, 0)
            if self.epochs_done == _CHIEF_FAILED:
                raise UsageError(
                    "--resume: the chief worker could not resume the run (see its error)"
                )
            directory = chief_run_dir / rundir.CHECKPOINTS
            try:
                # Epoch 0 without any checkpoint: the chief found none either, and both start
                # from the networks as built (see Checkpoints.restore_latest).
                if self.epochs_done or checkpoints.on_disk(directory):
                    path = directory / f"{checkpoints.PREFIX}-{self.epochs_done}"
                    problem = checkpoints.unreadable(path)
                    if problem is not None:
                        raise checkpoints.CheckpointError(
                            f"--resume: cannot read the chief's checkpoint {path} ({problem}); "
                            f"{_SHARED_LOGDIR}"
                        )
                    self.checkpoints.restore(path)
            except Exception:
                with contextlib.suppress(Exception):  # the chief waits for the answer
                    distribute.any_worker(strategy, failed=True)
                raise
            if distribute.any_worker(strategy, failed=False):
                raise UsageError(
                    "--resume: another worker could not restore the run (see its error)"
                )

    @contextlib.contextmanager
    def _released_on_error(self):
        """Releases the run directory's lock if the block raises."""
        try:
            yield
        except BaseException:
            self.lock.release()
            raise

    def run(self):
        """Trains from the checkpointed epoch to config.epochs; returns the GAN. Releases the
        run directory's lock when it returns or raises."""
        try:
            return self._train()
        finally:
            self.lock.release()

    def _train(self):
        import tensorflow as tf

        from gan import callbacks

        config, run_dir = self.config, self.run_dir
        steps_per_epoch = config.steps_per_epoch(len(self.images))
        dataset = data.make_dataset(
            self.images,
            config.batch_size,
            config.seed,
            config.epochs,
            self.epochs_done,
            labels=self.labels,
        )
        hook = safety.signal_hook_from_env()
        writer = tf.summary.create_file_writer(str(run_dir))
        try:
            with safety.StopRequest() as stop:
                self.model.fit(
                    dataset,
                    epochs=config.epochs,
                    initial_epoch=self.epochs_done,
                    steps_per_epoch=steps_per_epoch,
                    shuffle=False,  # make_dataset shuffles, reproducibly per epoch
                    verbose=0,  # ConsoleProgress prints instead
                    callbacks=[
                        # first, so that a diverged epoch writes nothing
                        callbacks.StopOnNonFinite(self.checkpoints, steps_per_epoch),
                        callbacks.ConsoleProgress(config.epochs, steps_per_epoch),
                        callbacks.HParams(writer, dataclasses.asdict(config), run_dir.name),
                        callbacks.ScalarSummaries(writer),
                        callbacks.SampleGrids.for_run(
                            config,
                            self.samples_dir,
                            writer,
                            config.sample_every,
                            config.epochs,
                            self.clusters,
                        ),
                        callbacks.History(self.history_csv, run_dir / rundir.LOSSES_PLOT),
                        *([self._evaluation(writer)] if config.eval_every else []),
                        *([callbacks.SendSignal(hook, steps_per_epoch)] if hook else []),
                        # after every per-epoch writer: the checkpoint commits the epoch
                        callbacks.SaveCheckpoints(
                            self.checkpoints,
                            config.epochs,
                            stop,
                            every=config.checkpoint_every,
                            interval=config.checkpoint_interval,
                        ),
                        callbacks.SaveNetworks(run_dir),
                        callbacks.Profile(run_dir, config.profile_steps, steps_per_epoch),
                    ],
                )
        finally:
            writer.close()
        self.epochs_done = int(self.checkpoints.epoch.numpy())
        if stop.signum is not None and self.epochs_done < config.epochs:
            raise safety.Interrupted(stop.signum, self.epochs_done, config.epochs)
        return self.model

    def _evaluation(self, writer):
        from gan.callbacks import Evaluation
        from gan.clusters import sample_sequence

        every, epochs = self.config.eval_every, self.config.epochs
        clusters = None
        if self.clusters is not None:  # the clusters the samples are drawn for
            count, n = self.config.self_condition, self.evaluator.held_out_count
            clusters = sample_sequence(self.clusters, count, n)
        return Evaluation(self.evaluator, self.run_dir, writer, every, epochs, clusters)


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


def _main(args: argparse.Namespace) -> int:
    try:
        config = _resolve_config(args)
        run_dir = Path(config.logdir) / config.run
        chief = distribute.is_chief(config.strategy)  # only the chief writes run_dir
        if chief:
            _check_run_dir(run_dir, args.resume)
        safety.signal_hook_from_env()
        source = data_source(config.dataset, config.data, config.source, "training on")
        config = config.replace(source=source)  # config.json records it: --resume reads the same
        images, labels = load_data(config)
        if len(images) < config.batch_size:
            raise UsageError(
                f"only {len(images)} images, fewer than one batch of {config.batch_size}; "
                f"lower --batch-size or raise --limit"
            )
        _check_profile_steps(config, len(images))
    except (UsageError, data.DataError) as error:
        return _usage_error(error)

    resume_command = shlex.join(
        [*PROG.split(), "--logdir", config.logdir, "--run", config.run, "--resume"]
    )
    note = "" if chief else " (the chief worker does; this one's output is discarded)"
    # A multiworker run joins its cluster here, before anything is written, within
    # --join-timeout; Training then gets the same strategy (make_strategy keeps one per kind).
    distribute.make_strategy(config.strategy, args.join_timeout, PROG)
    try:
        with distribute.output_dir(run_dir, chief) as output:
            try:
                training = Training(
                    config,
                    output,
                    images,
                    args.resume,
                    labels=labels,
                    chief_run_dir=None if chief else run_dir,
                )
            except UsageError as error:  # run directory, checkpoint, devices: nothing written
                return _usage_error(error)
            if args.resume:
                for line in training.notices:
                    print(f"{PROG}: warning: {line}", file=sys.stderr)
                print(f"Resuming {run_dir} after epoch {training.epochs_done} of {config.epochs}")
            print(f"Training on {len(images)} images; writing {run_dir}{note}", flush=True)
            training.run()
    except safety.NonFiniteLoss as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except safety.Interrupted as stop:
        print(f"{stop}; resume with: {resume_command}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:
        then = _restart(run_dir, resume_command)
        if config.strategy == "multiworker" and distribute.lost_worker(error):
            print(
                f"{PROG}: error: another worker stopped or cannot be reached "
                f"({type(error).__name__}); on every worker, {then}",
                file=sys.stderr,
            )
            return 1
        full = rundir.disk_full(error, run_dir)
        if full is None:
            raise
        print(f"{PROG}: error: {full}; free some space, then {then}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if (run_dir / rundir.CONFIG).exists():
            where = f"resume from the last checkpoint (or epoch 0) with: {resume_command}"
        else:
            where = "nothing was written"
        print(f"\nInterrupted; {where}", file=sys.stderr)
        return 130
    print(f"Done: tensorboard --logdir {config.logdir}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Train the textbook MLP GAN on MNIST-style 28x28 images. Outputs go to "
        "LOGDIR/RUN: config.json, TensorBoard events (tensorboard --logdir LOGDIR), "
        "sample grids under samples/, checkpoints under checkpoints/, and the trained "
        "networks as .keras files.",
    )
    Config.add_arguments(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run LOGDIR/RUN from its latest checkpoint with its saved "
        "config.json; flags that differ from the saved options are refused, except "
        + ", ".join(map(flag, CHANGEABLE_ON_RESUME)),
    )
    parser.add_argument(
        "--join-timeout",
        type=positive_number,
        default=JOIN_TIMEOUT,
        metavar="SECONDS",
        help="--strategy multiworker: how long a worker waits for the others of TF_CONFIG's "
        "cluster to join; then it stops with one line, killed (exit status 137), before "
        "writing anything. A worker that stopped before joining (e.g. on a bad option) would "
        f"otherwise keep the others waiting for ever (default: {JOIN_TIMEOUT:g})",
    )
    add_verbose_argument(parser)
    return parser


def _restart(run_dir: Path, resume_command: str) -> str:
    """How to go on after training failed: resume the run once it has a config.json."""
    if (run_dir / rundir.CONFIG).exists():
        return f"resume with: {resume_command}"
    return "run the same command again"


def _usage_error(error: Exception) -> int:
    print(f"{PROG}: error: {error}", file=sys.stderr)
    return 2


def _resolve_config(args: argparse.Namespace) -> Config:
    """The options of a new run (flags over defaults), or of the resumed run LOGDIR/RUN (its
    config.json, with the flags that may change on resume)."""
    given = Config.given_options(args)
    # validates every given flag, applies --preset
    config = Config.from_options(**given).absolute()
    if not args.resume:
        return config.replace(run=config.run or time.strftime("%Y%m%d-%H%M%S"))
    if config.run is None:
        raise UsageError("--resume needs --run NAME, the run to continue")
    run_dir = Path(config.logdir) / config.run
    if not (run_dir / rundir.CONFIG).exists():
        raise UsageError(f"--resume: no run to resume at {run_dir} (no config.json there)")
    try:
        saved = rundir.read_config(run_dir)
    except UsageError as error:
        raise UsageError(f"--resume: {error}") from None
    return saved.resumed_with({name: getattr(config, name) for name in given})


def _check_evaluable_classes(num_classes: int) -> None:
    """Refuses --eval-every for a conditional run with more classes than the evaluation
    classifier knows: their label accuracy cannot be measured."""
    from gan.classifier import NUM_CLASSES

    if num_classes > NUM_CLASSES:
        raise UsageError(
            f"--eval-every: the evaluation classifier knows {NUM_CLASSES} classes, the run "
            f"has --num-classes {num_classes}"
        )


def _check_profile_steps(config: Config, image_count: int) -> None:
    """Refuses a --profile-steps range that ends after the run's last training step."""
    if config.profile_steps:
        total = config.epochs * config.steps_per_epoch(image_count)
        last = parse_step_range(config.profile_steps)[1]
        if last > total:
            raise UsageError(
                f"--profile-steps ends at step {last}, but the run has only {total} steps"
            )


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuses a run directory that another process is writing, a new run's directory that
    exists or cannot be created, and a resumed run's directory that cannot be written."""
    if resume:
        rundir.check_free(run_dir)
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise UsageError(f"--resume: cannot write to {run_dir}")
        return
    try:
        rundir.check_new(run_dir)
        parent = run_dir.parent
        while not parent.exists():
            parent = parent.parent
    except OSError as error:  # e.g. a name longer than the file system allows
        raise UsageError(f"cannot create {run_dir} ({error.strerror or error})") from None
    # os.access also fails for root on a read-only file system; RunLock catches the rest.
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create {run_dir}: {parent} is not a writable directory")


if __name__ == "__main__":
    sys.exit(main())
