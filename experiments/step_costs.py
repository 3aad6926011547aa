"""What restructuring the default step could gain (issue 16: the default step against JAX's).

    python -m experiments.step_costs [--epochs 6] [--data PATH] [--out FILE.md]

Two parts, each in interleaved rounds against the default measured in the same run:

- In one process, the default step (gan.train's configuration, experiments.timing.CompiledStep)
  and the same step changed in one respect each (CHANGES): the discriminator called once on the
  real and fake batches concatenated instead of twice; the noise drawn once before timing
  instead of at every step (an upper bound on drawing a whole call's noise at once, which would
  still draw as many numbers); no dropout in the discriminator (an upper bound on any cheaper
  way to draw its masks), and both of these at once. They train differently from the default,
  so none could become it: they bound what such a change can buy. Beside them, the peers of
  experiments/peers.py whose framework is installed (the JAX step: `pip install -e ".[bench]"`),
  as the benchmark times them.
- As a user runs it (experiments.end_to_end.run_gan_train), `python -m gan.train` with
  TensorFlow's thread pools set by TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS
  (THREADS), against the default (unset: one thread per core for each).

Run it on an otherwise idle machine: the load average is in the output.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from experiments import peers
from experiments.end_to_end import gan_train_rate
from experiments.timing import (
    CompiledStep,
    best_of,
    from_project_root,
    load_average,
    ratio_rows,
    report,
    time_in_rounds,
    training_run_parser,
)
from gan.tables import markdown_table

ROUNDS = 3
DEFAULT = "default"
# TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS of a gan.train run (None: unset)
THREADS = ((None, None), ("1", None), (None, "1"), ("1", "1"), ("4", "4"))


def one_discriminator_call(model, batch_size: int) -> None:
    """D's update on real and fake images as one batch of 2B: one call instead of two (as
    D has no BatchNorm, the same logits, but other dropout masks)."""
    import tensorflow as tf

    def train_discriminator(real_images, fake_images, real_labels=None, fake_labels=None):
        with model._tape_on(model.discriminator) as tape:
            both = tf.concat([real_images, fake_images], axis=0)
            real_logits, fake_logits = tf.split(model.discriminator(both, training=True), 2)
            d_loss = model.loss_fn.discriminator(real_logits, fake_logits)
        model._apply(tape, d_loss, model.discriminator, model.d_optimizer)
        return d_loss, real_logits, fake_logits

    model.train_discriminator = train_discriminator


def noise_drawn_once(model, batch_size: int) -> None:
    """Every step gets the same noise, drawn before timing: no random numbers for z."""
    noise = model.sample_noise(batch_size)
    model.sample_noise = lambda batch_size: noise


def no_dropout(model, batch_size: int) -> None:
    """The discriminator's dropout off (rate 0: Keras' Dropout then returns its input)."""
    import keras

    for layer in model.discriminator.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0


def no_random_numbers(model, batch_size: int) -> None:
    """Both of the above: the step draws no random numbers at all."""
    noise_drawn_once(model, batch_size)
    no_dropout(model, batch_size)


CHANGES = {
    "D on real and fake as one batch": one_discriminator_call,
    "noise drawn once, not per step (bound)": noise_drawn_once,
    "no dropout in D (bound)": no_dropout,
    "neither noise draws nor dropout (bound)": no_random_numbers,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = training_run_parser(
        "python -m experiments.step_costs",
        __doc__,
        6,
        "epochs of training per variant and round (in the process, and of each gan.train run)",
        least=3,
    )(argv)

    from gan import data
    from gan.config import Config

    path = Path(args.data).resolve()
    images = data.load_path(path)
    config = Config().resolved(len(images), has_gpu=False)
    per_epoch = config.steps_per_epoch(len(images))

    def changed(change):
        return CompiledStep(images, config, adapt=lambda model: change(model, config.batch_size))

    steps = {DEFAULT: CompiledStep(images, config)}
    steps.update({name: changed(change) for name, change in CHANGES.items()})
    peer_steps, skipped = peers.available(images, config.steps_per_call)
    steps.update(peer_steps)
    step_rates = best_of(time_in_rounds(steps, args.epochs * per_epoch, ROUNDS))

    def threads(intra, inter):
        env = {"TF_NUM_INTRAOP_THREADS": intra, "TF_NUM_INTEROP_THREADS": inter}
        return gan_train_rate(str(path), per_epoch, env=env)

    runs = {_threads_name(*pair): threads(*pair) for pair in THREADS}
    run_rates = best_of(time_in_rounds(runs, args.epochs, ROUNDS))
    command = shlex.join(["python", "-m", "experiments.step_costs", *argv])
    given = from_project_root(path)
    text = "\n".join(
        [
            "# What restructuring the default step could gain",
            "",
            f"`{command}`",
            "",
            f"The default step and the same step changed in one respect, in one process on "
            f"{given}: {args.epochs * per_epoch} steps per variant, {config.steps_per_call} per "
            "compiled call, "
            f"best of {ROUNDS} interleaved rounds. (bound): an upper bound on what the change "
            "named in the docstring of experiments/step_costs.py can gain.",
            "",
            markdown_table(
                ["variant", "steps/s", "vs default"], ratio_rows(step_rates, DEFAULT), 1
            ),
            *(f"Skipped: {note}." for note in skipped),
            "",
            f"`python -m gan.train --data {given} --epochs {args.epochs}` with TensorFlow's "
            f"thread pools set by the environment, best of {ROUNDS} interleaved rounds; steps/s: "
            f"{per_epoch} steps over the run's median epoch after the first.",
            "",
            markdown_table(
                ["thread pools", "steps/s", "vs default"],
                ratio_rows(run_rates, _threads_name(None, None)),
                1,
            ),
            "",
            f"Load average (1, 5, 15 min) at the end: {load_average()}.",
        ]
    )
    report(text, args.out)
    return 0


def _threads_name(intra: str | None, inter: str | None) -> str:
    if intra is inter is None:
        return DEFAULT + " (one thread per core in each pool)"
    return ", ".join(
        f"{name}={value}"
        for name, value in (("intra-op", intra), ("inter-op", inter))
        if value is not None
    )


if __name__ == "__main__":
    sys.exit(main())
