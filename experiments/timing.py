"""What the benchmark scripts share: the data they time on, timing in interleaved rounds, our
compiled step as a timed variant, and a description of the machine.

A variant is a callable `variant(steps) -> steps per second` that runs about `steps` training
steps. TensorFlow is imported by the code that runs steps, not here, so that the scripts'
--help answers without loading it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from gan.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "mnist"  # 10,000 digits
# Fashion-MNIST's training set: 60,000 images, as many as the chapter's MNIST training set.
LARGE_DATA = (
    PROJECT_ROOT.parent / "shared" / "data" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
)
FRAMEWORKS = ("tensorflow", "keras", "jax", "optax", "torch")  # versions in machine()


class CompiledStep:
    """Our GAN (gan.gan.GAN) under fit(), as `python -m gan.train` trains it, without the
    callbacks. A call runs a whole number of compiled calls (config.steps_per_call steps each)
    on batches float32 (config.batch_size, 28, 28, 1) of `images` (uint8 (N, 28, 28)).
    adam: the optimizer class (gan.optimizers.FusedAdam if None, as gan.train's); adapt: a
    function that changes the built GAN before its step is traced (experiments.step_costs)."""

    def __init__(self, images: np.ndarray, config: Config, adam=None, adapt=None):
        import keras

        from gan import data
        from gan.gan import build_gan
        from gan.optimizers import FusedAdam

        keras.utils.set_random_seed(0)
        self.model = build_gan(config, adam=adam or FusedAdam)
        if adapt:
            adapt(self.model)
        self.per_call = config.steps_per_call
        self.dataset = data.make_dataset(images, config.batch_size, config.seed, epochs=10**6)
        self(2 * self.per_call)  # trace (and XLA-compile) before timing

    def __call__(self, steps: int) -> float:
        steps = max(self.per_call, steps // self.per_call * self.per_call)
        started = time.perf_counter()
        self.model.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        return steps / (time.perf_counter() - started)


def time_in_rounds(variants: dict, steps: int, rounds: int) -> dict:
    """name -> what each round's `variant(steps)` returned (steps/s for a timed variant).
    Round 1 runs every variant, then round 2 every variant, ...: a burst of load from another
    process disturbs one round of every variant instead of all rounds of one. Prints each
    result to stderr as it is made."""
    results = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            results[name].append(variant(steps))
            shown = results[name][-1]
            shown = f"{shown:8.1f} steps/s" if isinstance(shown, float) else shown
            print(f"  {name:24s} {shown}", file=sys.stderr, flush=True)
    return results


def best_of(rounds: dict) -> dict:
    """name -> the fastest of its rounds, from time_in_rounds' result: the least disturbed."""
    return {name: max(rates) for name, rates in rounds.items()}


def ratio_rows(rates: dict, baseline: str) -> list[list[str]]:
    """Table rows [name, steps/s, ratio to `baseline`'s steps/s] of `rates` (name -> steps/s)."""
    return [[name, f"{rate:.1f}", f"{rate / rates[baseline]:.2f}x"] for name, rate in rates.items()]


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as a timing script's output states them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict:
    """The CPU, core count, versions of Python and of the installed frameworks, and the load
    average (call it at the end of a run: the load during the run)."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {}
    for name in FRAMEWORKS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
        "load_average_at_end": os.getloadavg(),
    }


def training_run_parser(
    prog: str, doc: str, epochs: int, epochs_help: str, least: int, switches: dict | None = None
):
    """The command line of a script that times training runs (experiments.epoch_overhead,
    experiments.preset_time): --epochs (at least `least`), --data, --out, and the on/off
    flags `switches` (flag -> help text). Returns a function argv -> parsed arguments, which
    exits with status 2 and one line for bad input."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    for switch, text in (switches or {}).items():
        parser.add_argument(switch, action="store_true", help=text)
    parser.add_argument(
        "--epochs", type=int, default=epochs, help=f"{epochs_help} (default: {epochs})"
    )
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="the images (default: the 10,000 MNIST digits)"
    )
    parser.add_argument("--out", help="also write the table to this Markdown file")

    def parse(argv):
        args = parser.parse_args(argv)
        if args.epochs < least:
            parser.error(
                f"--epochs must be at least {least}: the epochs that trace the step "
                "or save the networks are not counted"
            )
        return args

    return parse


def from_project_root(path: str | Path) -> str:
    """`path` as it is typed from the project root, where `python -m experiments.NAME` runs:
    what results record, so that they hold no absolute path of the machine that made them."""
    return os.path.relpath(Path(path).resolve(), PROJECT_ROOT)


def report(text: str, out: str | None) -> None:
    """Prints a script's Markdown result and, with --out, also writes it to that file."""
    print(text)
    if out:
        Path(out).write_text(text)
