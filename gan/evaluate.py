"""Score samples against real images: `python -m gan.evaluate --run logs/NAME` (see --help).

The protocol and its scores are gan.evaluation's; this module is the command line over it:
it scores a run's generator (sampled here, every class in turn for a conditional one, each
cluster at its share for a --self-condition one, scored as an unconditional one's), a
generator file or a file of samples, prints the table, and with --run appends the result to
the run's eval.json and writes its TensorBoard scalars.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

from gan import data, rundir
from gan.cli import (
    Parser,
    add_source_arguments,
    add_verbose_argument,
    check_output,
    data_source,
    default_output,
    native_stderr_held_back,
    verbose,
    whole_number,
)
from gan.config import DATASETS, SOURCES
from gan.errors import UsageError
from gan.evaluation import Evaluator, class_rows, format_table, log_scalars
from gan.sampling import GeneratorSource

PROG = "python -m gan.evaluate"
CLASS_GRID_COLUMNS = 10


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # TensorFlow loads in here, and the classifier may train: its progress goes to stdout.
    # The run directory's lock, if any, is held until main returns.
    with native_stderr_held_back(verbose(args)), contextlib.ExitStack() as held:
        try:
            return _main(args, held)
        except Exception as error:  # eval.json is replaced atomically: it stays as it was
            full = rundir.disk_full(error, Path(args.run or "."))
            if full is None:
                raise
            print(f"{PROG}: error: {full}; free some space, then run it again", file=sys.stderr)
            return 1


def _main(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    try:
        source, samples, labels = _check_sources(args)
        if source is not None and source.run_dir is not None:
            # It writes eval.json and TensorBoard events there: one writer at a time.
            held.enter_context(rundir.RunLock(source.run_dir))
        json_path = check_output(args.json, ".json", "--json", overwrite=True)
        if json_path is None and source is not None and source.run_dir is not None:
            json_path = source.run_dir / rundir.EVALUATIONS
        if json_path is not None:
            rundir.read_records(json_path)  # refuse a file that cannot be appended to, up front
        grid_path = check_output(
            args.class_grid,
            ".png",
            "--class-grid",
            args.overwrite,
            default_output(source, "class-grid", args.seed, ".png", args.truncation),
        )
        dataset, data_path, origin = _real_data(args, source)
        generator = source.load() if source else None
        evaluator = Evaluator.for_dataset(
            dataset, data_path, args.limit, origin, cache_dir=args.cache_dir
        )
        if generator is not None:  # as GeneratorSource.samples draws and scores them
            count = args.n or evaluator.held_out_count
            samples, labels = source.samples(generator, count, args.seed, args.truncation)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    try:
        result = evaluator.evaluate(samples, labels)
    except UsageError as error:  # labels the classifier does not have
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    label = source.describe() if source else args.samples
    if args.truncation is not None:
        label += f", noise truncated to ±{args.truncation:g}"
    print(format_table(result, label))

    if grid_path is not None:
        from gan.images import make_grid, save_png

        votes = evaluator.classifier.predict(samples)[1].argmax(axis=1)
        grid = make_grid(class_rows(samples, votes, CLASS_GRID_COLUMNS), 10, CLASS_GRID_COLUMNS)
        save_png(grid.repeat(2, axis=0).repeat(2, axis=1), grid_path)
        print(f"Wrote {grid_path}: row k holds the first images the classifier calls k")
    if json_path is not None:
        record = {
            "samples": str(source.path) if source else args.samples,
            "epoch": source.epoch if source else None,
            "seed": args.seed if source else None,
            "truncation": args.truncation if source else None,
            **result,
        }
        rundir.append_record(json_path, record)
        print(f"Appended to {json_path}")
    if args.truncation is not None:
        # Not the run's eval/* curves: those are of the noise the generator was trained on.
        print("No TensorBoard scalars for truncated noise (eval.json records it)")
    elif source is not None and source.run_dir is not None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(source.run_dir))
        log_scalars(writer, result, step=source.epoch or 0)
        writer.close()
        print(f"TensorBoard scalars eval/* and eval_real/* at step {source.epoch or 0}")
    return 0


def _check_sources(args) -> tuple[GeneratorSource | None, np.ndarray | None, np.ndarray | None]:
    """(source, None, None) for --run/--generator, (None, images, labels) for --samples:
    labels (the classes of a conditional run's samples) if the file has them (an .npz's
    `labels` beside `images`, see gan.data.read_labels), else None."""
    if args.samples is None:
        return GeneratorSource.resolve(args.run, args.generator, args.checkpoint), None, None
    if args.run or args.generator or args.checkpoint:
        raise UsageError("give --samples or a generator (--run / --generator), not both")
    if args.n is not None or args.truncation is not None:
        flag = "--n" if args.n is not None else "--truncation"
        raise UsageError(
            f"{flag} is for generating images; --samples scores the file's as they are"
        )
    if not Path(args.samples).is_file():
        raise UsageError(f"--samples {args.samples}: no such file")
    samples = data.load_path(args.samples)
    if len(samples) < 2:
        raise UsageError(f"--samples {args.samples}: need at least 2 images")
    try:
        labels = data.read_labels(args.samples)
    except data.LabelError:
        return None, samples, None
    if len(labels) != len(samples):
        raise UsageError(
            f"--samples {args.samples}: {len(samples)} images but {len(labels)} labels"
        )
    return None, samples, labels


def _real_data(args, source: GeneratorSource | None) -> tuple[str, str | None, str | None]:
    """--dataset, --data and --source of the real images: the flags, else those the run
    trained on (the source resolved by gan.cli.data_source)."""
    config = rundir.read_config(source.run_dir) if source and source.run_dir else None
    dataset = args.dataset or (config.dataset if config else "mnist")
    if config is None or args.dataset or args.data or args.source:
        data_path, origin = args.data, args.source
    elif config.data is not None and not Path(config.data).exists():
        raise UsageError(
            f"the run was trained on --data {config.data}, which is not there from here; "
            f"pass --data (and --dataset) for the real images"
        )
    else:
        data_path, origin = config.data, config.source
    return dataset, data_path, data_source(dataset, data_path, origin, "scoring against")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Score a generator (--run / --generator) or a file of samples (--samples) "
        "against real images: Fréchet distance of classifier features, classifier score, "
        "classes covered and KL(class histogram || uniform), next to the same numbers for "
        "held-out real images. Prints a table; with --run also appends the result to "
        "RUN_DIR/eval.json and writes TensorBoard scalars eval/* and eval_real/* there.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--samples", metavar="FILE.npz", help="score these images (gan.generate --out) instead"
    )
    parser.add_argument(
        "--n",
        type=whole_number(2),
        help="images to generate (default: as many as the held-out real images, so both rows "
        "of the table are estimated from equally many images)",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        metavar="{" + ",".join(DATASETS) + "}",
        help="the real data set (default: the run's, else mnist); from --source unless --data "
        "is given",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        metavar="{" + ",".join(SOURCES) + "}",
        help="where --dataset's images come from, as for gan.train (default: the run's, else "
        "keras, or the bundled MNIST test digits when keras.datasets cannot be had)",
    )
    parser.add_argument(
        "--data",
        help="the real images as local files with their labels: a directory of idx files "
        "(each *-images-idx3-ubyte with its *-labels-idx1-ubyte), one idx image file, or an "
        ".npz with x_train/y_train[/x_test/y_test] (default: the run's --data)",
    )
    parser.add_argument("--limit", type=whole_number(4), help="use only the first N real images")
    parser.add_argument(
        "--cache-dir",
        help="where trained classifiers are cached (default: $GAN_CACHE_DIR, else "
        "$XDG_CACHE_HOME/gan/classifiers, else ~/.cache/gan/classifiers)",
    )
    parser.add_argument(
        "--class-grid",
        nargs="?",
        const=True,
        metavar="FILE.png",
        help="also write a 10-row grid: row k holds the first 10 scored images the classifier "
        "calls class k (black where fewer), to check the class numbers by eye (without FILE, "
        f"with --run: RUN_DIR/{rundir.GENERATED}/class-grid-epochE-seedS.png, numbered -2, -3, ... "
        "rather than overwrite one)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --class-grid FILE if it exists"
    )
    parser.add_argument(
        "--json",
        metavar="FILE.json",
        help="append the result to this JSON list (default with --run: RUN_DIR/eval.json)",
    )
    add_verbose_argument(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main())
