"""How long each preset of gan.config.PRESETS trains on this machine, as a user runs it.

    python -m experiments.preset_time [--epochs 10] [--data PATH] [--out FILE.md] [--variants]

Runs `python -m gan.train --preset NAME --epochs EPOCHS` for each preset (with --variants also
`--preset best` with each variant the quality experiment tried, experiments.quality.WITH), one
at a time, on the 10,000 MNIST digits (experiments.end_to_end.run_gan_train), takes its
median epoch from history.csv (the first, which traces the step, left out) and projects the
preset's own number of epochs: the training a user of `--preset NAME` waits for, without
start-up, evaluations or checkpoints. Run it on an otherwise idle machine: the load average
is in the output.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from experiments.end_to_end import run_gan_train, steady_epoch_seconds
from experiments.timing import from_project_root, report, training_run_parser
from gan.config import PRESETS, Config, flag, shown
from gan.tables import markdown_table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = training_run_parser(
        "python -m experiments.preset_time",
        __doc__,
        10,
        "epochs timed",
        least=3,
        switches={
            "--variants": "also time --preset best with each variant of the quality experiment "
            "(experiments.quality.WITH: e.g. wider networks)"
        },
    )(argv)

    from gan import data

    path = Path(args.data).resolve()
    images = len(data.load_path(path))
    rows = []
    for name, options in runs(args.variants).items():
        config = Config.from_options(**options)
        run = run_gan_train(str(path), args.epochs, *flags(options))
        epoch = steady_epoch_seconds(run)
        steps = config.steps_per_epoch(images)
        rows.append(
            [
                name,
                args.epochs,
                f"{epoch:.2f} s",
                f"{steps / epoch:.1f}",
                config.epochs,
                _minutes(epoch * config.epochs),
                f"{run['to_training_line_seconds']:.1f} s",
            ]
        )
    header = [
        "preset (or best-with-VARIANT)",
        "epochs timed",
        "median epoch",
        "steps/s",
        "its epochs",
        "projected training time",
        "start-up to the first epoch",
    ]
    lines = [
        f"`{shlex.join(['python', '-m', 'experiments.preset_time', *argv])}`",
        "",
        markdown_table(header, rows, numbers_from=1),
        "",
        f"On {from_project_root(path)}: {images:,} images ({os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.1f} at the "
        "end). Projected training time: the median epoch times the preset's epochs.",
    ]
    report("\n".join(lines) + "\n", args.out)
    return 0


def runs(variants: bool) -> dict:
    """row name -> the gan.config.Config options it trains with: each preset, and with
    `variants` best with each variant of experiments.quality.WITH ("best-with-NAME")."""
    presets = {name: {"preset": name} for name in PRESETS}
    if not variants:
        return presets
    from experiments.quality import WITH

    return presets | {
        f"best-with-{name}": {"preset": "best", **options} for name, options in WITH.items()
    }


def flags(options: dict) -> list[str]:
    """The command-line flags that give `options` (Config field -> value)."""
    return [text for name, value in options.items() for text in (flag(name), str(shown(value)))]


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


if __name__ == "__main__":
    sys.exit(main())
