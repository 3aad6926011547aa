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
nothing is overwritten. The results directory (OUT) is rebuilt from the runs every time:

    README.md      the table, the options every run shares, the command that made it
    results.json   every number of the table, class histograms, the evaluations per epoch
    <run>.png      10x10 samples of each run: the first 100 of the images it was scored on;
                   of a conditional run (--conditional) the first 10 of each class, a row
                   per class
    curves.png     Fréchet distance and classifier score against epoch, one line per run
    time.png       the same against training wall time (the seconds of the epochs so far,
                   without evaluations and checkpoints)
An experiment that repeats a configuration with other seeds (Experiment.repeats) also gets
a table of each repeated configuration's mean and standard deviation. Conditional runs are
scored with their labels (gan.evaluate: label accuracy, Fréchet distance within each class),
which the table shows too.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

from gan import rundir  # no TensorFlow: --help stays instant

SHARED_DATA = Path("../shared/data")  # relative to the project root, like every path here
RESULTS = Path("experiments/results")
QUICK_IMAGES = 256  # --quick: train and evaluate on this many images ...
QUICK_OPTIONS = {"epochs": 2, "batch_size": 32, "eval_every": 1}  # ... for 2 short epochs
QUICK_CLASSIFIER_EPOCHS = 2
GRID_SIDE, GRID_SCALE = 10, 2  # <run>.png: 10x10 samples, each pixel 2x2

# The quality target (issue 7): classifier score >= 0.95 of the real images', all 10 classes
# covered, KL(class histogram || uniform) <= 0.02 nats.
TARGET_SCORE_RATIO, TARGET_CLASSES, TARGET_KL = 0.95, 10, 0.02
# The quality target of a repeated configuration (issue 15), on the means over its seeds: the
# above and a Fréchet distance <= TARGET_FD.
TARGET_FD = 3.0
# A conditional experiment may also ask for a label accuracy (issue 17: >= 0.97 on MNIST,
# whose classifier is 98.3 % accurate on real digits) and a lower KL (its classes are
# balanced by construction): Experiment.label_accuracy_target and kl_target.
SURE = 0.99  # a sample the classifier is sure of: its most probable class has p > SURE

# Options that say where a run lives or how often it reports, not what it trains.
NOT_COMPARED = {
    "logdir",
    "run",
    "sample_every",
    "checkpoint_interval",
    "checkpoint_every",
    "eval_every",
}
# Options compared but not listed as options in the tables: those that change only how fast a
# run trains, and the epochs, which have a column of their own.
NOT_SHOWN = {"jit", "steps_per_call", "profile_steps", "deterministic", "strategy", "epochs"}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """name: results directory and run group; title: the table's heading; runs: run name ->
    the gan.config.Config options of that run (beside `options`, shared by all runs; a
    --preset among them applies under both); dataset / data: the real images, for training
    (first `train_images` of them, all if None) and for evaluation (all of them); repeats:
    name -> the runs that repeat one configuration with other seeds; module: the script,
    python -m experiments.MODULE (default: name); kl_target and label_accuracy_target: the
    quality target's KL bound and, for conditional runs, its least label accuracy (None:
    none)."""

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


def main(experiment: Experiment, argv: list[str] | None = None) -> int:
    """The command line of an exercise script (experiments/<experiment.name>.py). Exit status
    0; 1 if a run diverged; 2 with one line on stderr for bad input (data, labels, an existing
    run directory that does not match or did not finish)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(experiment).parse_args(argv)
    from gan.cli import native_stderr_held_back

    with native_stderr_held_back():  # TensorFlow's C++ start-up lines: shown only on a crash
        return _run(experiment, args, argv)


def _run(experiment: Experiment, args: argparse.Namespace, argv: list[str]) -> int:
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
        selected = _selected(args.only, configs)
        # The runs share their data: with labels if any run is conditional (the others
        # ignore them).
        conditional = any(config.conditional for config in configs.values())
        images, labels = load_data(next(iter(configs.values())).replace(conditional=conditional))
        classes = None if labels is None else int(labels.max()) + 1
        finished = {name: _finished(configs[name], len(images), classes) for name in selected}
        evaluator = _evaluator(experiment, args.quick, data_path, args.cache_dir)
    except UsageError as error:
        print(f"{_prog(experiment)}: error: {error}", file=sys.stderr)
        return 2
    for name in selected:  # with --only, several processes may train disjoint runs
        if not finished[name]:
            print(f"== {experiment.name}: training {name} in {logdir / name}", flush=True)
            try:
                _train(configs[name], logdir / name, images, evaluator, labels)
            except safety.NonFiniteLoss as error:
                print(f"{_prog(experiment)}: {name}: {error}", file=sys.stderr)
                return 1
    if args.only:  # a last call without --only writes the results
        print(
            f"{experiment.name}: {', '.join(selected)} finished; run again without --only to "
            "write the results"
        )
        return 0

    results, grids = {}, {}
    for name, config in configs.items():
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
    command = shlex.join([*_prog(experiment).split(), *argv])
    write_results(out, experiment, results, real, grids, command)
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
    return max([main(experiments[name], rest) for name in datasets])


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


def _finished(config, image_count: int, class_count: int | None = None) -> bool:
    """Whether the run exists and is finished. Raises UsageError if it exists but does not
    match `config` (resolved for image_count images labelled 0..class_count-1) or is
    unfinished: it is never overwritten."""
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
    if not ((run_dir / rundir.GENERATOR).is_file() and (run_dir / rundir.EVALUATIONS).is_file()):
        raise UsageError(
            f"{run_dir} did not finish; continue it with `python -m gan.train --logdir "
            f"{config.logdir} --run {config.run} --resume`, or remove it"
        )
    return True


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
    (run_dir / "wall_time.json").write_text(json.dumps({"seconds": round(seconds, 1)}) + "\n")


def run_result(run_dir: Path, steps_per_epoch: int) -> dict:
    """What the results need of a finished run: its options, the last evaluation, every
    evaluation's scores by epoch, speed and wall time."""
    saved = rundir.read_config(run_dir)
    evaluations = json.loads((run_dir / rundir.EVALUATIONS).read_text())
    with open(run_dir / rundir.HISTORY, newline="") as file:
        seconds = [float(row["seconds"]) for row in csv.DictReader(file)]
    trained = [sum(seconds[:epoch]) for epoch in range(len(seconds) + 1)]  # after each epoch
    evaluated = {record["epoch"] for record in evaluations}
    # An epoch's time includes an evaluation when one ran, and the first one compiles the
    # step: the median of the others is the training speed, robust to bursts of other load.
    plain = [s for epoch, s in enumerate(seconds, 1) if epoch > 1 and epoch not in evaluated]
    timed = run_dir / "wall_time.json"  # absent if the run was finished by gan.train --resume
    wall = json.loads(timed.read_text())["seconds"] if timed.exists() else None
    last = evaluations[-1]
    return {
        "run": run_dir.name,
        "config": dataclasses.asdict(saved),
        "epochs": saved.epochs,
        "steps": saved.epochs * steps_per_epoch,
        "steps_per_second": round(steps_per_epoch / statistics.median(plain or seconds), 1),
        "wall_seconds": wall,
        "generated": last["generated"],
        "real": last["real"],
        "curve": [
            {
                "epoch": r["epoch"],
                "train_seconds": round(trained[r["epoch"]], 1),
                **{k: r["generated"][k] for k in _CURVE if k in r["generated"]},
            }
            for r in evaluations
        ],
    }


# the scores of each evaluation kept for the curves; label_accuracy: conditional runs only
_CURVE = ("frechet_distance", "classifier_score", "classes_covered", "class_kl", "label_accuracy")


def meets_target(
    generated: dict, real: dict, kl_target: float = TARGET_KL, label_target: float | None = None
) -> bool:
    """The quality target: classifier score >= TARGET_SCORE_RATIO of the real images',
    TARGET_CLASSES classes covered, KL <= kl_target and, for conditional samples (those with
    a label accuracy) if label_target is set, label accuracy >= label_target."""
    labelled = label_target is not None and "label_accuracy" in generated
    return (
        generated["classifier_score"] >= TARGET_SCORE_RATIO * real["classifier_score"]
        and generated["classes_covered"] >= TARGET_CLASSES
        and generated["class_kl"] <= kl_target
        and (not labelled or generated["label_accuracy"] >= label_target)
    )


def confidence(evaluator, images) -> dict:
    """How sure the evaluation classifier is of uint8 images (N, 28, 28): the mean entropy of
    p(y|x) in nats ("mean_entropy") and the share of images whose most probable class has
    p > SURE ("sure"). The classifier score is exp(H(p(y)) - mean entropy): with the classes
    balanced, the mean entropy is what keeps it below the real images'."""
    import numpy as np
    from scipy.special import xlogy

    _, probabilities = evaluator.classifier.predict(images)
    entropy = -xlogy(probabilities, probabilities).sum(axis=1)
    return {
        "mean_entropy": float(entropy.mean()),
        "sure": float(np.mean(probabilities.max(axis=1) > SURE)),
    }


def write_results(
    out: Path, experiment: Experiment, results: dict, real: dict, grids: dict, command: str
):
    """Writes OUT/README.md, results.json, <run>.png (from `grids`: run name -> uint8 images)
    and curves.png (see the module docstring)."""
    from gan.images import make_grid, save_png

    out.mkdir(parents=True, exist_ok=True)
    for name, images in grids.items():
        save_png(make_grid(images, GRID_SIDE, GRID_SIDE, scale=GRID_SCALE), out / f"{name}.png")
    _plot_curves(out / "curves.png", results, "epoch")
    _plot_curves(out / "time.png", results, "train_seconds")
    record = {"experiment": experiment.name, "command": command, "real": real, "runs": results}
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "README.md").write_text(format_report(experiment, results, real, command))


def format_report(experiment: Experiment, results: dict, real: dict, command: str) -> str:
    """The markdown of OUT/README.md."""
    configs = [r["config"] for r in results.values()]
    labelled = any("label_accuracy" in r["generated"] for r in results.values())
    varying = [
        name
        for name in configs[0]
        if name not in NOT_COMPARED | NOT_SHOWN and len({json.dumps(c[name]) for c in configs}) > 1
    ]
    header = [
        "run",
        *map(_flag, varying),
        "epochs (steps)",
        "Fréchet distance ↓",
        "classifier score ↑ (÷ real)",
        "classes covered",
        "KL(classes ‖ uniform) ↓",
        f"classifier sure (p > {SURE})",
        *(["label accuracy ↑", "Fréchet distance within class ↓"] if labelled else []),
        "target",
        "steps/s",
        "wall time",
    ]
    rows = [
        [
            name,
            *(_value(r["config"][option]) for option in varying),
            f"{r['epochs']} ({r['steps']:,})",
            f"{r['generated']['frechet_distance']:.2f}",
            f"{r['generated']['classifier_score']:.3f} "
            f"({r['generated']['classifier_score'] / real['classifier_score']:.3f})",
            str(r["generated"]["classes_covered"]),
            f"{r['generated']['class_kl']:.4f}",
            f"{100 * r['generated']['sure']:.0f} %",
            *(_conditional_cells(r["generated"]) if labelled else []),
            "met" if _meets(experiment, r["generated"], real) else "not met",
            f"{r['steps_per_second']:.1f}",
            _duration(r["wall_seconds"]),
        ]
        for name, r in results.items()
    ]
    rows.append(
        [
            "real images (held-out half)",
            *[""] * len(varying),
            "",
            f"{real['frechet_distance']:.2f}",
            f"{real['classifier_score']:.3f} (1.000)",
            str(real["classes_covered"]),
            f"{real['class_kl']:.4f}",
            f"{100 * real['sure']:.0f} %",
            *(_conditional_cells(real) if labelled else []),
            "",
            "",
            "",
        ]
    )
    shared = {
        _flag(name): _value(value)
        for name, value in configs[0].items()
        if name not in NOT_COMPARED | NOT_SHOWN and name not in varying and value is not None
    }
    grids = [f"![{name}]({name}.png)" for name in results]
    lines = [
        f"# {experiment.title}",
        "",
        _table(header, rows),
        "",
        f"Every run: {', '.join(f'{k} {v}' for k, v in shared.items())}. Scores of "
        f"{real['n']:,} samples (noise seed 0) against the real images with gan.evaluate; the "
        f"evaluation classifier is {100 * real['classifier_accuracy']:.1f} % accurate on the "
        f"held-out real half. Target: classifier score >= {TARGET_SCORE_RATIO} of the real "
        f"images', {TARGET_CLASSES} classes covered, KL <= {experiment.kl_target}"
        f"{_label_target(experiment) if labelled else ''}. Classifier sure: the "
        f"share of samples whose most probable class has p > {SURE}. steps/s: over the median "
        "training epoch without an evaluation (shared 2-core CPU: other jobs ran beside it); "
        "wall time: the whole run, compiling, evaluations and checkpoints included."
        f"{_LABELLED_NOTE if labelled else ''}",
        "",
        (
            f"Samples (row k: the first {GRID_SIDE} scored images generated for class k):"
            if labelled
            else "Samples (the first 100 scored images of each run):"
        ),
        "",
        _table(list(results), [grids]),
        "",
        *_repeats_section(experiment, results, real),
        "Scores during training, by epoch and by training wall time (the seconds of the "
        "epochs so far, without evaluations and checkpoints):",
        "",
        "![curves](curves.png)",
        "",
        "![time](time.png)",
        "",
        f"Made by `{command}`.",
        "",
    ]
    return "\n".join(lines)


_LABELLED_NOTE = (
    " A conditional run is scored on samples of every class in turn, with their labels: label "
    "accuracy is the share the classifier assigns to the class they were generated for (the "
    "real images' is the classifier's accuracy), the Fréchet distance within class its mean "
    "over the classes of samples of class c against real images of class c."
)


def _conditional_cells(scores: dict) -> list[str]:
    """The label accuracy and mean Fréchet distance within class of a row ("—" for
    unconditional samples)."""
    if "label_accuracy" not in scores:
        return ["—", "—"]
    return [
        f"{100 * scores['label_accuracy']:.1f} %",
        f"{scores['mean_class_frechet_distance']:.2f}",
    ]


def _label_target(experiment: Experiment) -> str:
    target = experiment.label_accuracy_target
    return "" if target is None else f", label accuracy >= {100 * target:.0f} %"


def _meets(experiment: Experiment, generated: dict, real: dict) -> bool:
    return meets_target(generated, real, experiment.kl_target, experiment.label_accuracy_target)


def _repeats_section(experiment: Experiment, results: dict, real: dict) -> list[str]:
    """Lines of a table of each repeated configuration's mean ± standard deviation over its
    seeds (none if the experiment repeats nothing), with the quality target judged on the
    means: the classifier-score ratio, classes covered (the fewest of any seed), KL and
    Fréchet distance."""
    rows = []
    for name, runs in experiment.repeats.items():
        generated = [results[run]["generated"] for run in runs if run in results]
        if len(generated) < 2:
            continue
        fd = [g["frechet_distance"] for g in generated]
        ratio = [g["classifier_score"] / real["classifier_score"] for g in generated]
        kl = [g["class_kl"] for g in generated]
        classes = min(g["classes_covered"] for g in generated)
        met = (
            statistics.mean(ratio) >= TARGET_SCORE_RATIO
            and classes >= TARGET_CLASSES
            and statistics.mean(kl) <= experiment.kl_target
            and statistics.mean(fd) <= TARGET_FD
        )
        rows.append(
            [
                name,
                str(len(generated)),
                _mean_sd(fd, 2),
                _mean_sd(ratio, 3),
                str(classes),
                _mean_sd(kl, 4),
                "met" if met else "not met",
            ]
        )
    if not rows:
        return []
    header = [
        "configuration",
        "seeds",
        "Fréchet distance ↓",
        "classifier score ÷ real ↑",
        "fewest classes covered",
        "KL(classes ‖ uniform) ↓",
        "quality target (on the means)",
    ]
    target = (
        f"Quality target: classifier score >= {TARGET_SCORE_RATIO} of the real images', "
        f"{TARGET_CLASSES} classes covered, KL <= {experiment.kl_target} and Fréchet distance "
        f"<= {TARGET_FD}, on the means over the seeds."
    )
    return ["Mean ± standard deviation over seeds:", "", _table(header, rows), "", target, ""]


def _mean_sd(values: list, digits: int) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value(value) -> str:
    """An option's value in a table: as the command line writes it (layer widths 256,512)."""
    from gan.config import shown

    return "—" if value is None else str(shown(value))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _samples(run_dir: Path, count: int):
    """The `count` images a finished run was evaluated on and, for a conditional run, their
    labels (None otherwise): gan.generate with noise seed 0 from its generator.keras, as
    gan.train's evaluation draws them."""
    import keras

    from gan.sampling import generate_with_labels

    generator = keras.models.load_model(run_dir / rundir.GENERATOR, compile=False)
    return generate_with_labels(generator, count, seed=0)


def _plot_curves(path: Path, results: dict, x: str) -> None:
    """Fréchet distance and classifier score of every run against `x` ("epoch" or
    "train_seconds")."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, result in results.items():
        xs = [point[x] for point in result["curve"]]
        left.plot(xs, [p["frechet_distance"] for p in result["curve"]], "o-", label=name)
        right.plot(xs, [p["classifier_score"] for p in result["curve"]], "o-", label=name)
    label = {"epoch": "epoch", "train_seconds": "training wall time (s)"}[x]
    left.set(xlabel=label, ylabel="Fréchet distance (lower is better)", yscale="log")
    right.set(xlabel=label, ylabel="classifier score (higher is better)")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _prog(experiment: Experiment) -> str:
    return f"python -m experiments.{experiment.module or experiment.name}"


def _parser(experiment: Experiment) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(experiment),
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
        "--cache-dir",
        help="where evaluation classifiers are cached (default: gan.evaluate's)",
    )
    return parser
