"""One exercise of the chapter as an experiment: a few training runs that differ in some
options, each scored by gan.evaluate, collected in a results directory a reader can look at.
The exercise scripts (experiments/depth.py, noise_size.py, upgraded.py, fashion.py) each define
an `Experiment` and call `main`:

    python -m experiments.depth            # full mode: writes experiments/results/depth/
    python -m experiments.depth --quick    # tiny data, 2 epochs: checks that everything runs

Each run is an ordinary gan.train run in LOGDIR/<experiment>/<run> (default LOGDIR:
logs/experiments), so `tensorboard --logdir logs/experiments/depth` compares the runs: the
HParams dashboard lists every option of every run beside its final scalars, the eval/* scores
included. The runs are evaluated during training (Config.eval_every) with gan.evaluate against
the experiment's real data set; the table shows the last evaluation, after the last epoch.

A finished run (it has generator.keras and eval.json) is not trained again: after a crash, the
script continues with the runs that are missing, and a rerun only rebuilds the results. A run
directory whose saved options differ from the experiment's, or an unfinished one, is an error:
nothing is overwritten. The results directory (OUT: README.md, results.json, sample grids and
curves) is experiments.report's.
A conditional experiment may also ask for a label accuracy (issue 17: >= 0.97 on MNIST, next
to the classifier's own accuracy on real digits) and a lower KL (its classes are balanced by
construction): Experiment.label_accuracy_target and kl_target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from experiments.report import (
    GRID_SIDE,
    NOT_COMPARED,
    TARGET_KL,
    confidence,
    run_result,
    write_results,
)
from gan import rundir  # no TensorFlow: --help stays instant

SHARED_DATA = Path("../shared/data")  # relative to the project root, like every path here
RESULTS = Path("experiments/results")
QUICK_IMAGES = 256  # --quick: train and evaluate on this many images ...
QUICK_OPTIONS = {"epochs": 2, "batch_size": 32, "eval_every": 1}  # ... for 2 short epochs
QUICK_CLASSIFIER_EPOCHS = 2


@dataclasses.dataclass(frozen=True)
class Experiment:
    """name: results directory and run group; title: the table's heading; runs: run name ->
    the gan.config.Config options of that run (beside `options`, shared by all runs; a
    --preset among them applies under both); dataset / data: the real images, for training
    (first `train_images` of them, all if None) and for evaluation (all of them); repeats:
    name -> the runs that repeat one configuration with other seeds; module: the script,
    python -m experiments.MODULE (default: name); kl_target and label_accuracy_target: the
    quality target's KL bound and, for conditional runs, its least label accuracy (None:
    none); fd_target: the target's largest Fréchet distance (None: none); wall_target: the
    most seconds of wall time a repeated configuration's runs may take (None: no bound)."""

    name: str
    title: str
    runs: dict
    options: dict = dataclasses.field(default_factory=dict)
    dataset: str = "mnist"
    data: Path = SHARED_DATA / "mnist"
    train_images: int | None = None
    repeats: dict = dataclasses.field(default_factory=dict)
    module: str | None = None
    kl_target: float = TARGET_KL
    label_accuracy_target: float | None = None
    fd_target: float | None = None
    wall_target: float | None = None


def main(experiment: Experiment, argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command line of an exercise script (experiments/<experiment.name>.py). Exit status
    0; 1 if a run diverged; 2 with one line on stderr for bad input (data, labels, an existing
    run directory that does not match or did not finish). prog: the command, as the results
    record it (default: python -m experiments.MODULE)."""
    argv = sys.argv[1:] if argv is None else argv
    prog = prog or f"python -m experiments.{experiment.module or experiment.name}"
    args = _parser(experiment, prog).parse_args(argv)
    from gan.cli import native_stderr_held_back

    with native_stderr_held_back():  # TensorFlow's C++ start-up lines: shown only on a crash
        return _run(experiment, args, argv, prog)


def _run(experiment: Experiment, args: argparse.Namespace, argv: list[str], prog: str) -> int:
    from gan import safety
    from gan.errors import UsageError
    from gan.evaluation import class_rows
    from gan.train import load_data

    suffix = "-quick" if args.quick else ""
    out = Path(args.out or RESULTS / (experiment.name + suffix))
    logdir = Path(args.logdir) / (experiment.name + suffix)
    data_path = Path(args.data or experiment.data)
    try:
        configs = run_configs(experiment, args.quick, data_path, logdir)
        if args.partial and args.only:
            raise UsageError("--partial trains nothing and --only writes no results: give one")
        selected = _selected(args.only, configs)
        # The runs share their data: with labels if any run is conditional (the others
        # ignore them; a --self-condition run clusters the images itself).
        conditional = any(config.conditional for config in configs.values())
        first = next(iter(configs.values()))
        images, labels = load_data(first.replace(conditional=conditional, self_condition=0))
        classes = None if labels is None else int(labels.max()) + 1
        finished = {
            name: _finished(configs[name], len(images), classes, args.partial) for name in selected
        }
        untrained = [name for name in selected if not finished[name]]
        if args.partial and len(untrained) == len(selected):
            raise UsageError(f"--partial: no run of {experiment.name} has finished yet")
        evaluator = _evaluator(experiment, args.quick, data_path, args.cache_dir)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    for name in [] if args.partial else untrained:  # with --only: disjoint runs per process
        print(f"== {experiment.name}: training {name} in {logdir / name}", flush=True)
        try:
            _train(configs[name], logdir / name, images, evaluator, labels)
        except safety.NonFiniteLoss as error:
            print(f"{prog}: {name}: {error}", file=sys.stderr)
            return 1
    if args.only:  # a last call without --only writes the results
        print(
            f"{experiment.name}: {', '.join(selected)} finished; run again without --only to "
            "write the results"
        )
        return 0

    results, grids = {}, {}
    for name, config in configs.items():
        if args.partial and not finished[name]:
            continue
        run_dir = logdir / name
        results[name] = run_result(run_dir, config.steps_per_epoch(len(images)))
        # the images it was scored on, and for a conditional run their labels
        samples, sample_labels = _samples(run_dir, evaluator.held_out_count)
        results[name]["generated"].update(confidence(evaluator, samples))
        grids[name] = (
            samples[: GRID_SIDE * GRID_SIDE]
            if sample_labels is None
            # gan.evaluation.class_rows by the labels asked for: row k, the first of class k
            else class_rows(samples, sample_labels, GRID_SIDE)
        )
    real = {
        **evaluator.real_scores(labelled=conditional),
        **confidence(evaluator, evaluator.held_out_images),
    }
    command = shlex.join([*prog.split(), *argv])
    stopped = {  # name -> how to resume it, for a run that exists but did not finish
        name: f"python -m gan.train --logdir {logdir} --run {name} --resume"
        if (logdir / name).exists()
        else None
        for name in (untrained if args.partial else [])
    }
    write_results(out, experiment, results, real, grids, command, stopped)
    print((out / "README.md").read_text())
    return 0


def main_per_dataset(experiments: dict, module: str, argv: list[str] | None = None) -> int:
    """The command line of a script with one Experiment per data set (experiments.quality,
    experiments.conditional: python -m experiments.MODULE): `--dataset NAME` (a key of
    `experiments`; default: every one) picks one, the other arguments go to `main`; `--out`
    is refused, since each data set has its own results directory. Returns the worst exit
    status of the data sets'; exits with status 2 and one line for a bad value."""
    from gan.cli import Parser

    argv = sys.argv[1:] if argv is None else argv
    # allow_abbrev=False: main's --data is not an abbreviation of --dataset
    parser = Parser(prog=f"python -m experiments.{module}", add_help=False, allow_abbrev=False)
    parser.add_argument("--dataset", choices=tuple(experiments))
    parser.add_argument("--out")
    args, rest = parser.parse_known_args(argv)
    if args.out:
        parser.error(
            f"--out is not supported: each data set writes experiments/results/{module}/NAME"
        )
    if "-h" in rest or "--help" in rest:
        names = ",".join(experiments)
        print(f"python -m experiments.{module} [--dataset {{{names}}}] plus the options below")
    datasets = [args.dataset] if args.dataset else list(experiments)
    prog = f"python -m experiments.{module} --dataset"
    return max([main(experiments[name], rest, f"{prog} {name}") for name in datasets])


def _selected(only: str | None, configs: dict) -> list[str]:
    """The run names --only lists (all runs without it); UsageError for an unknown name."""
    from gan.errors import UsageError

    if not only:
        return list(configs)
    names = [name.strip() for name in only.split(",")]
    unknown = [name for name in names if name not in configs]
    if unknown:
        raise UsageError(
            f"--only: no run {', '.join(unknown)} in this experiment; its runs are "
            f"{', '.join(configs)}"
        )
    return names


def run_configs(experiment: Experiment, quick: bool, data_path: Path, logdir: Path) -> dict:
    """run name -> its gan.config.Config (validated: raises UsageError): the experiment's
    options, then the run's, then with `quick` the quick mode's (also over a run's epochs)."""
    from gan.config import Config

    common = {
        **experiment.options,
        "dataset": experiment.dataset,
        "data": str(data_path),
        "limit": experiment.train_images,
        "logdir": str(logdir),
    }
    quick_options = {**QUICK_OPTIONS, "limit": QUICK_IMAGES} if quick else {}
    return {
        name: Config.from_options(**{**common, **options, **quick_options, "run": name})
        for name, options in experiment.runs.items()
    }


def _finished(
    config, image_count: int, class_count: int | None = None, unfinished_ok: bool = False
) -> bool:
    """Whether the run exists and is finished. Raises UsageError if it exists but does not
    match `config` (resolved for image_count images labelled 0..class_count-1) or, unless
    unfinished_ok, is unfinished: it is never overwritten."""
    from gan.config import Config, shown
    from gan.errors import UsageError

    run_dir = Path(config.logdir) / config.run
    if not run_dir.exists():
        return False
    try:
        saved = rundir.read_config(run_dir)
    except UsageError as error:
        raise UsageError(f"{run_dir} is not a finished run ({error}); remove it") from None
    expected = config.resolved(image_count, False, class_count)
    differing = [
        f"{name} {shown(getattr(saved, name))!r} (here {shown(getattr(expected, name))!r})"
        for name in _compared(Config)
        if getattr(saved, name) != getattr(expected, name) and name != "jit"
    ]
    if differing:
        raise UsageError(
            f"{run_dir} was trained with other options: {', '.join(differing)}; remove it or "
            f"pass another --logdir"
        )
    done = (run_dir / rundir.GENERATOR).is_file() and (run_dir / rundir.EVALUATIONS).is_file()
    if not done and not unfinished_ok:
        raise UsageError(
            f"{run_dir} did not finish; continue it with `python -m gan.train --logdir "
            f"{config.logdir} --run {config.run} --resume`, or remove it"
        )
    return done


def _compared(config_class) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class) if f.name not in NOT_COMPARED]


def _evaluator(experiment: Experiment, quick: bool, data_path: Path, cache_dir: str | None):
    """The gan.evaluation.Evaluator of the experiment's real images (all of them; with --quick
    the first QUICK_IMAGES, and a classifier trained for QUICK_CLASSIFIER_EPOCHS)."""
    from gan.classifier import ClassifierSpec
    from gan.evaluation import Evaluator

    limit = QUICK_IMAGES if quick else None
    spec = ClassifierSpec(epochs=QUICK_CLASSIFIER_EPOCHS) if quick else None
    return Evaluator.for_dataset(
        experiment.dataset, str(data_path), limit, cache_dir=cache_dir, spec=spec
    )


def _train(config, run_dir: Path, images, evaluator, labels=None) -> None:
    from gan.train import train

    started = time.perf_counter()
    train(config, run_dir, images, evaluator=evaluator, labels=labels)
    seconds = time.perf_counter() - started
    (run_dir / rundir.WALL_TIME).write_text(json.dumps({"seconds": round(seconds, 1)}) + "\n")


def _samples(run_dir: Path, count: int):
    """The `count` images a finished run was evaluated on and, for a conditional run, their
    labels (None otherwise, also for a --self-condition run's clusters): gan.generate with
    noise seed 0 from its generator.keras, as gan.train's evaluation draws them."""
    from gan.sampling import GeneratorSource

    source = GeneratorSource.resolve(run=str(run_dir))
    return source.samples(source.load(), count, seed=0)


def _parser(experiment: Experiment, prog: str) -> argparse.ArgumentParser:
    from gan.cli import Parser

    parser = Parser(
        prog=prog,
        description=f"{experiment.title}. Trains each run (see the script), evaluates it "
        "with gan.evaluate and writes the table, sample grids and curves to OUT.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny run to check that everything works: the first {QUICK_IMAGES} images, "
        f"{QUICK_OPTIONS['epochs']} epochs of batches of {QUICK_OPTIONS['batch_size']}, a "
        f"classifier trained for {QUICK_CLASSIFIER_EPOCHS} epochs; writes to "
        f"{experiment.name}-quick directories",
    )
    parser.add_argument(
        "--data",
        help=f"the real images with their labels (default: {experiment.data}, relative to "
        "the project: ../shared/data/...)",
    )
    parser.add_argument(
        "--logdir",
        default="logs/experiments",
        help="where the runs go: LOGDIR/NAME/RUN (default: logs/experiments)",
    )
    parser.add_argument(
        "--out",
        help=f"results directory (default: experiments/results/{experiment.name}, with "
        f"--quick experiments/results/{experiment.name}-quick)",
    )
    parser.add_argument(
        "--only",
        metavar="RUN,...",
        help="train only these runs (those not finished yet) and write no results: for "
        "training disjoint runs in several processes; a last call without --only writes them",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="train nothing: write the results of the runs finished so far, naming the others "
        "as not trained yet (for an experiment too long for one sitting; a later call without "
        "--partial trains the rest and rewrites the results)",
    )
    parser.add_argument(
        "--cache-dir",
        help="where evaluation classifiers are cached (default: gan.evaluate's)",
    )
    return parser
