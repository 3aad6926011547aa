"""Draw samples from a trained generator: `python -m gan.generate --run logs/NAME --n 10000
--out samples.npz` (see --help); of a conditional run (--conditional), of chosen classes:
`--label 7`, `--label 0-9`, `--label 1,3,5` (image i gets the list's label i mod its length;
without --label every class in turn, label i mod num_classes), saved beside the images in the
.npz as `labels`. Of a --self-condition run, --label picks clusters, and without it each
cluster is drawn at its share of the training images; the .npz keeps them as `clusters`.

The generator comes from a run directory (its generator.keras, or with --checkpoint E,
latest or PATH one of its checkpoints) or from a bare saved model (--generator path.keras);
the noise from --seed, optionally truncated (--truncation): gan.sampling. Given without a
file, --out and --png write into RUN_DIR/generated/, numbered rather than overwriting a file.
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np

from gan import cli, rundir
from gan.cli import (
    Parser,
    add_source_arguments,
    add_verbose_argument,
    check_output,
    default_output,
    whole_number,
)
from gan.config import MAX_CLASSES
from gan.errors import UsageError
from gan.sampling import GeneratorSource, check_memory, generate, label_sequence

PROG = "python -m gan.generate"
MAX_CLASS = MAX_CLASSES - 1  # labels are uint8


def parse_labels(text: str) -> tuple[int, ...]:
    """--label: '7' -> (7,), '0-3' -> (0, 1, 2, 3), '1,3,5' -> (1, 3, 5); items may mix,
    e.g. '0-2,7'. Raises argparse.ArgumentTypeError (one line, exit 2) for anything else."""
    labels = []
    for item in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
        if not first <= last <= MAX_CLASS:
            raise argparse.ArgumentTypeError(
                f"expected a class 0-{MAX_CLASS}, a range FIRST-LAST or a comma list of them "
                f"(e.g. 7, 0-9, 1,3,5), got {text!r}"
            )
        labels.extend(range(first, last + 1))
    return tuple(labels)


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


def _main(args: argparse.Namespace) -> int:
    try:
        source = GeneratorSource.resolve(args.run, args.generator, args.checkpoint)
        if args.out is None and args.png is None:
            raise UsageError("nothing to write: give --out [FILE.npz] and/or --png [FILE.png]")
        out = check_output(
            args.out,
            ".npz",
            "--out",
            args.overwrite,
            default_output(source, "samples", args.seed, ".npz", args.truncation),
        )
        png = check_output(
            args.png,
            ".png",
            "--png",
            args.overwrite,
            default_output(source, "grid", args.seed, ".png", args.truncation),
        )
        check_label(args.label, source)  # from the run's config.json, before TensorFlow
        generator = source.load()
        count = max(args.n if out else 0, args.rows * args.cols if png else 0)
        grid_pixels = (args.rows * 30 + 2) * (args.cols * 30 + 2) * args.scale**2 if png else 0
        from gan.models import generator_inputs

        noise_dim, num_classes = generator_inputs(generator)
        if args.label is not None and num_classes is None:  # a bare .keras file
            raise UsageError(f"--label: {source.path} is not a conditional generator")
        clustered = source.self_conditioned  # its classes are clusters
        if num_classes is None:
            labels = None
        elif args.label is None and clustered:
            labels = source.default_labels(count)  # its clusters at their shares
        else:
            labels = label_sequence(args.label, count, num_classes)
        check_memory(count, noise_dim, grid_pixels)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    from gan.images import make_grid, save_png

    images = generate(generator, count, args.seed, labels=labels, truncation=args.truncation)
    if out:
        arrays = {"images": images[: args.n]}
        if labels is not None:
            # a self-conditioned run's clusters are no classes for gan.evaluate to score
            arrays["clusters" if clustered else "labels"] = labels[: args.n]
        np.savez_compressed(out, **arrays)
        keys = "key 'images', uint8" + "".join(
            f"; their {'classes' if key == 'labels' else key}: key '{key}'"
            for key in arrays
            if key != "images"
        )
        print(f"Wrote {args.n} images from {source.describe()} to {out} ({keys})")
    if png:
        save_png(make_grid(images, args.rows, args.cols, scale=args.scale), png)
        print(f"Wrote a {args.rows}x{args.cols} grid from {source.describe()} to {png}")
    return 0


def check_label(label: tuple[int, ...] | None, source: GeneratorSource) -> None:
    """Refuses --label for a run that is not conditional, or with a class the run does not
    have, from the run's config.json alone (no TensorFlow). A bare .keras file is checked
    once loaded."""
    if label is None or source.run_dir is None:
        return
    num_classes = source.num_classes()
    if num_classes is None:
        raise UsageError(
            f"--label: {source.run_dir} is not a conditional run (train with --conditional "
            "or --self-condition)"
        )
    label_sequence(label, 1, num_classes)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Draw images from a trained generator: an .npz of uint8 images (key "
        "'images', shape (N, 28, 28), 0-255; for a conditional run also their classes, key "
        "'labels', shape (N,)) for gan.evaluate, and/or a PNG grid to look at.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--n", type=whole_number(1), default=10000, help="images to write to --out (default: 10000)"
    )
    parser.add_argument(
        "--label",
        type=parse_labels,
        metavar="CLASSES",
        help="for a conditional run (--conditional): the classes to draw, a class (7), a "
        "range (0-9) or a comma list (1,3,5); image i gets the list's label i mod its length "
        "(default: every class in turn). The .npz keeps them as 'labels' (uint8). For a "
        "--self-condition run: its clusters (default: each at its share of the training "
        "images), kept as 'clusters'",
    )
    parser.add_argument(
        "--out",
        nargs="?",
        const=True,
        metavar="FILE.npz",
        help="write the images to this .npz file (without FILE, with --run: "
        f"RUN_DIR/{rundir.GENERATED}/samples-epochE-seedS.npz, numbered -2, -3, ... rather than "
        "overwrite one)",
    )
    parser.add_argument(
        "--png",
        nargs="?",
        const=True,
        metavar="FILE.png",
        help="write a ROWS x COLS grid as a PNG (without FILE, with --run: "
        f"RUN_DIR/{rundir.GENERATED}/grid-epochE-seedS.png, numbered likewise)",
    )
    parser.add_argument(
        "--rows", type=whole_number(1), default=10, help="grid rows for --png (default: 10)"
    )
    parser.add_argument(
        "--cols", type=whole_number(1), default=10, help="grid columns for --png (default: 10)"
    )
    parser.add_argument(
        "--scale",
        type=whole_number(1),
        default=2,
        help="--png pixels per image pixel (default: 2; a 10x10 grid is then 604 px square)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out / --png FILE if it exists"
    )
    add_verbose_argument(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
