"""Where an epoch's time goes besides its steps: `python -m gan.train`'s callbacks, one by one.

    python -m experiments.epoch_overhead [--epochs 20] [--data PATH] [--out FILE.md]

Trains the default configuration in this process (gan.train.train) on the same images twice:
with a checkpoint after every epoch (--checkpoint-every 1) and as `python -m gan.train` does by
default (--checkpoint-interval). Each hook of each gan.callbacks callback is timed; the table
gives each callback's mean milliseconds per epoch and its share of the epoch's step time (the
time from one epoch's start to the next's, less every callback's), over the epochs between
the first (tracing) and the last (saving the networks).
"""

from __future__ import annotations

import collections
import contextlib
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from experiments.timing import machine, report, training_run_parser
from gan.config import Config
from gan.tables import markdown_table

HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end")
VARIANTS = {
    "checkpoint every epoch": {"checkpoint_every": 1},
    "default (checkpoint by interval)": {},
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = training_run_parser(
        "python -m experiments.epoch_overhead", __doc__, 20, "epochs per run", least=4
    )(argv)

    from gan import data

    images = data.load_path(args.data)
    results = {name: measure(images, args.epochs, options) for name, options in VARIANTS.items()}
    command = shlex.join(["python", "-m", "experiments.epoch_overhead", *argv])
    report(markdown(results, len(images), args.epochs, command), args.out)
    return 0


def measure(images, epochs: int, options: dict) -> dict:
    """One run of `epochs` epochs: {"epoch_ms": mean epoch (start to next start),
    "callbacks_ms": {callback class: mean time of its hooks an epoch}} over the middle epochs."""
    from gan import callbacks
    from gan.train import train

    config = Config(epochs=epochs, **options)
    with tempfile.TemporaryDirectory() as logdir, _timed_hooks(callbacks) as spent:
        train(config.replace(logdir=logdir, run="overhead"), Path(logdir) / "overhead", images)
    starts = spent.pop("epoch starts")
    middle = range(1, epochs - 1)  # epoch 1 traces the step; the last one saves the networks
    epoch_ms = statistics.mean(1000 * (starts[i + 1] - starts[i]) for i in middle)
    callbacks_ms = {
        name: statistics.mean(1000 * per_epoch.get(i, 0.0) for i in middle)
        for name, per_epoch in spent.items()
    }
    return {"epoch_ms": epoch_ms, "callbacks_ms": callbacks_ms}


@contextlib.contextmanager
def _timed_hooks(module):
    """Wraps every per-epoch and per-step hook that a callback class of `module` defines
    (its own or inherited from a base other than keras' no-op Callback) with a timer. Yields
    {class name: {epoch index: seconds}, "epoch starts": [perf_counter at each epoch start]}."""
    import keras

    spent = collections.defaultdict(lambda: collections.defaultdict(float))
    spent["epoch starts"] = []
    epoch = [0]
    originals = []
    classes = [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, keras.callbacks.Callback)
    ]
    for cls in classes:
        for hook in HOOKS:
            method = getattr(cls, hook)
            if method is getattr(keras.callbacks.Callback, hook):
                continue  # keras' no-op

            def timed(self, *args, _method=method, _name=cls.__name__, **kwargs):
                started = time.perf_counter()
                try:
                    return _method(self, *args, **kwargs)
                finally:
                    spent[_name][epoch[0]] += time.perf_counter() - started

            originals.append((cls, hook, cls.__dict__.get(hook)))
            setattr(cls, hook, timed)
    first = module.ConsoleProgress  # every run has it: it marks each epoch's start
    begin = first.on_epoch_begin

    def on_epoch_begin(self, index, *args, **kwargs):
        epoch[0] = index
        spent["epoch starts"].append(time.perf_counter())
        return begin(self, index, *args, **kwargs)

    originals.append((first, "on_epoch_begin", first.__dict__.get("on_epoch_begin")))
    first.on_epoch_begin = on_epoch_begin
    try:
        yield spent
    finally:
        for cls, hook, original in reversed(originals):
            if original is None:
                delattr(cls, hook)
            else:
                setattr(cls, hook, original)


def markdown(results: dict, image_count: int, epochs: int, command: str) -> str:
    """The table: one row per callback, one column pair per variant; then the epoch's steps
    (the rest) and the callbacks' total as a share of them."""
    names = sorted({name for result in results.values() for name in result["callbacks_ms"]})
    header = ["callback"]
    for variant in results:
        header += [f"{variant}: ms / epoch", "% of steps"]
    steps = {variant: _steps_ms(result) for variant, result in results.items()}
    rows = []
    for name in names:
        cells = [name]
        for variant, result in results.items():
            ms = result["callbacks_ms"].get(name, 0.0)
            cells += [f"{ms:.1f}", f"{100 * ms / steps[variant]:.1f} %"]
        rows.append(cells)
    total = ["all callbacks"]
    for variant, result in results.items():
        ms = sum(result["callbacks_ms"].values())
        total += [f"**{ms:.1f}**", f"**{100 * ms / steps[variant]:.1f} %**"]
    rest = ["the epoch's steps (the rest)"]
    for variant in results:
        rest += [f"{steps[variant]:.1f}", ""]
    lines = [
        f"`{command}`",
        "",
        f"Machine: {_machine_line()}. The default configuration on {image_count:,} images, "
        f"{epochs} epochs; means over epochs 2 to {epochs - 1}.",
        "",
        markdown_table(header, [*rows, total, rest], numbers_from=1),
    ]
    return "\n".join(lines) + "\n"


def _steps_ms(result: dict) -> float:
    return result["epoch_ms"] - sum(result["callbacks_ms"].values())


def _machine_line() -> str:
    facts = machine()
    return (
        f"{facts['cpu']}, {facts['cores']} cores, TensorFlow {facts.get('tensorflow')}, "
        f"load average {facts['load_average_at_end'][0]:.1f} at the end"
    )


if __name__ == "__main__":
    sys.exit(main())
