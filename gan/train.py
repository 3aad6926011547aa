"""Train the GAN: `python -m gan.train --epochs 100` (see --help).

The command line is a thin layer over `train(config, run_dir)`: it validates every option and
loads the images before anything is written, and turns bad input into a one-line error with
exit status 2. A run writes LOGDIR/RUN/:

    config.json                   every option, with automatic choices resolved
    events.out.tfevents.*         TensorBoard: d_loss, g_loss, d_real, d_fake, sample grids
    samples/epoch_NNN.png         5x5 grids of G(fixed noise)
    history.csv, losses.png       per-epoch metrics and a plot of the losses
    generator.keras, discriminator.keras   the trained networks
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from gan import data, distribute
from gan.config import Config, ConfigError

PROG = "python -m gan.train"


def train(config: Config, run_dir: Path, images: np.ndarray | None = None):
    """Trains the GAN `config` describes and writes the run to `run_dir` (which must not exist).

    images: uint8 (N, 28, 28), already loaded and checked by the caller; loaded from
    config.dataset / config.data / config.limit if None. Trains under config.strategy (every
    worker of a multiworker run calls this). Returns the trained GAN.
    """
    # TensorFlow is imported here, not at the top, so that `--help` and bad options answer
    # instantly instead of after the seconds TensorFlow takes to load.
    import keras
    import tensorflow as tf

    from gan import callbacks
    from gan.gan import build_gan

    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything.
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_batch_split(config.batch_size, strategy.num_replicas_in_sync)
    if images is None:
        images = data.load(config.dataset, config.data, config.limit)
    config = config.resolved(len(images), has_gpu=bool(tf.config.list_physical_devices("GPU")))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True)  # raises if it exists: a run is never overwritten
    (run_dir / "config.json").write_text(config.to_json())

    keras.utils.set_random_seed(config.seed)  # weights, dropout; noise and shuffling seed below
    with strategy.scope():
        model = build_gan(config)
    steps_per_epoch = len(images) // config.batch_size
    dataset = data.make_dataset(images, config.batch_size, config.seed, config.epochs)
    fixed_noise = np.random.default_rng(config.seed).standard_normal(
        (callbacks.GRID_ROWS * callbacks.GRID_COLS, config.noise_dim), dtype=np.float32
    )
    writer = tf.summary.create_file_writer(str(run_dir))
    try:
        model.fit(
            dataset,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # make_dataset shuffles, reproducibly per epoch
            verbose=0,  # ConsoleProgress prints instead
            callbacks=[
                callbacks.ConsoleProgress(config.epochs, steps_per_epoch),
                callbacks.ScalarSummaries(writer),
                callbacks.SampleGrids(
                    fixed_noise, run_dir / "samples", writer, config.sample_every, config.epochs
                ),
                callbacks.History(run_dir / "history.csv", run_dir / "losses.png"),
                callbacks.SaveNetworks(run_dir),
            ],
        )
    finally:
        writer.close()
    return model


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = Config(**Config.given_options(args))
        config = config.replace(run=config.run or time.strftime("%Y%m%d-%H%M%S"))
        run_dir = Path(config.logdir) / config.run
        chief = distribute.is_chief(config.strategy)  # only the chief writes run_dir
        if chief:
            _check_run_dir(run_dir)
        images = data.load(config.dataset, config.data, config.limit)
        if len(images) < config.batch_size:
            raise ConfigError(
                f"only {len(images)} images, fewer than one batch of {config.batch_size}; "
                f"lower --batch-size or raise --limit"
            )
    except (ConfigError, data.DataError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    note = "" if chief else " (the chief worker does; this one's output is discarded)"
    print(f"Training on {len(images)} images; writing {run_dir}{note}", flush=True)
    try:
        with distribute.output_dir(run_dir, chief) as output:
            train(config, output, images)
    except ConfigError as error:  # found once TensorFlow knows the devices: nothing written
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nInterrupted; what was written so far is in {run_dir}", file=sys.stderr)
        return 130
    print(f"Done: tensorboard --logdir {config.logdir}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage dump: the message already names the flag.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train the textbook MLP GAN on MNIST-style 28x28 images. Outputs go to "
        "LOGDIR/RUN: config.json, TensorBoard events (tensorboard --logdir LOGDIR), "
        "sample grids under samples/, and the trained networks as .keras files.",
    )
    Config.add_arguments(parser)
    return parser


def _check_run_dir(run_dir: Path) -> None:
    """Refuses a run directory that exists or cannot be created."""
    if run_dir.exists():
        raise ConfigError(f"{run_dir} already exists; choose another --run name")
    parent = run_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {run_dir}: {parent} is not a writable directory")


if __name__ == "__main__":
    sys.exit(main())
