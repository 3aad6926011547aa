"""The results of an experiment (experiments.sweep): a finished run's numbers, read back from its
run directory, and the results directory OUT a reader looks at, rebuilt from the runs every
time:

    README.md      the table, the options every run shares, the command that made it
    results.json   every number of the table, class histograms, the evaluations per epoch
    <run>.png      10x10 samples of each run: the first 100 of the images it was scored on;
                   of a conditional run (--conditional) the first 10 of each class, a row
                   per class
    curves.png     Fréchet distance and classifier score against epoch, one line per run (the
                   seeds of a repeated configuration in one colour), with the real images'
                   scores and the quality target
    time.png       the same against training wall time (the seconds of the epochs so far,
                   without evaluations and checkpoints)

An experiment that repeats a configuration with other seeds (Experiment.repeats) also gets
a table of each repeated configuration's mean and standard deviation. Conditional runs are
scored with their labels (gan.evaluation: label accuracy, Fréchet distance within each
class), which the table shows too.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from gan import rundir  # no TensorFlow: the scripts' --help stays instant
from gan.config import flag, shown
from gan.tables import markdown_table

if TYPE_CHECKING:
    from experiments.sweep import Experiment

GRID_SIDE, GRID_SCALE = 10, 2  # <run>.png: 10x10 samples, each pixel 2x2

# The quality target (issue 7): classifier score >= 0.95 of the real images', all 10 classes
# covered, KL(class histogram || uniform) <= 0.02 nats.
TARGET_SCORE_RATIO, TARGET_CLASSES, TARGET_KL = 0.95, 10, 0.02
# The quality experiment's target (issue 15) adds a Fréchet distance <= TARGET_FD
# (Experiment.fd_target), and for its repeated configurations a training wall time of at most
# TARGET_WALL_SECONDS (Experiment.wall_target) for every seed.
TARGET_FD = 3.0
TARGET_WALL_SECONDS = 20 * 60
SURE = 0.99  # a sample the classifier is sure of: its most probable class has p > SURE

# Options that say where a run lives or how often it reports, not what it trains: neither
# compared with a finished run's (experiments.sweep) nor shown.
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


def run_result(run_dir: Path, steps_per_epoch: int) -> dict:
    """What the results need of a finished run: its options, the last evaluation, every
    evaluation's scores by epoch, speed and wall time."""
    saved = rundir.read_config(run_dir)
    evaluations = rundir.read_records(run_dir / rundir.EVALUATIONS)
    with open(run_dir / rundir.HISTORY, newline="") as file:
        seconds = [float(row["seconds"]) for row in csv.DictReader(file)]
    trained = [sum(seconds[:epoch]) for epoch in range(len(seconds) + 1)]  # after each epoch
    evaluated = {record["epoch"] for record in evaluations}
    # An epoch's time includes an evaluation when one ran, and the first one compiles the
    # step: the median of the others is the training speed, robust to bursts of other load.
    plain = [s for epoch, s in enumerate(seconds, 1) if epoch > 1 and epoch not in evaluated]
    timed = run_dir / rundir.WALL_TIME  # absent if the run was finished by gan.train --resume
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
    generated: dict,
    real: dict,
    kl_target: float = TARGET_KL,
    label_target: float | None = None,
    fd_target: float | None = None,
) -> bool:
    """The quality target: classifier score >= TARGET_SCORE_RATIO of the real images',
    TARGET_CLASSES classes covered, KL <= kl_target, a Fréchet distance <= fd_target if set
    and, for conditional samples (those with a label accuracy) if label_target is set, label
    accuracy >= label_target."""
    labelled = label_target is not None and "label_accuracy" in generated
    return (
        generated["classifier_score"] >= TARGET_SCORE_RATIO * real["classifier_score"]
        and generated["classes_covered"] >= TARGET_CLASSES
        and generated["class_kl"] <= kl_target
        and (fd_target is None or generated["frechet_distance"] <= fd_target)
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


def score_cells(scores: dict, real_score: float) -> list[str]:
    """A table's cells of gan.evaluate scores: Fréchet distance, classifier score (and its
    ratio to the real images' `real_score`), classes covered, KL(classes ‖ uniform)."""
    score = scores["classifier_score"]
    return [
        f"{scores['frechet_distance']:.2f}",
        f"{score:.3f} ({score / real_score:.3f})",
        str(scores["classes_covered"]),
        f"{scores['class_kl']:.4f}",
    ]


def confidence_cells(scores: dict) -> list[str]:
    """A table's cells of confidence()'s scores: the mean entropy and the share sure."""
    return [f"{scores['mean_entropy']:.3f}", f"{100 * scores['sure']:.0f} %"]


def write_results(
    out: Path,
    experiment: Experiment,
    results: dict,
    real: dict,
    grids: dict,
    command: str,
    untrained: dict | None = None,
):
    """Writes OUT/README.md, results.json, <run>.png (from `grids`: run name -> uint8 images)
    and curves.png (see the module docstring). untrained: the experiment's runs that are not
    in `results` (not trained yet), named in README.md and results.json: name -> the command
    that resumes it if it was stopped, else None."""
    untrained = untrained or {}
    from gan.images import make_grid, save_png

    out.mkdir(parents=True, exist_ok=True)
    for name, images in grids.items():
        save_png(make_grid(images, GRID_SIDE, GRID_SIDE, scale=GRID_SCALE), out / f"{name}.png")
    _plot_curves(out / "curves.png", experiment, results, real, "epoch")
    _plot_curves(out / "time.png", experiment, results, real, "train_seconds")
    record = {
        "experiment": experiment.name,
        "command": command,
        "real": real,
        "runs": results,
        "untrained": list(untrained),
    }
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "README.md").write_text(format_report(experiment, results, real, command, untrained))


def format_report(
    experiment: Experiment, results: dict, real: dict, command: str, untrained=None
) -> str:
    """The markdown of OUT/README.md; untrained: the runs not trained yet (as write_results
    takes them)."""
    configs = [r["config"] for r in results.values()]
    labelled = any("label_accuracy" in r["generated"] for r in results.values())
    varying = [
        name
        for name in configs[0]
        if name not in NOT_COMPARED | NOT_SHOWN and len({json.dumps(c[name]) for c in configs}) > 1
    ]
    header = [
        "run",
        *map(flag, varying),
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
            *score_cells(r["generated"], real["classifier_score"]),
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
            *score_cells(real, real["classifier_score"]),
            f"{100 * real['sure']:.0f} %",
            *(_conditional_cells(real) if labelled else []),
            "",
            "",
            "",
        ]
    )
    shared = {
        flag(name): _value(value)
        for name, value in configs[0].items()
        if name not in NOT_COMPARED | NOT_SHOWN and name not in varying and value is not None
    }
    grids = [f"![{name}]({name}.png)" for name in results]
    lines = [
        f"# {experiment.title}",
        "",
        markdown_table(header, rows),
        "",
        f"Every run: {', '.join(f'{k} {v}' for k, v in shared.items())}. Scores of "
        f"{real['n']:,} samples (noise seed 0) against the real images with gan.evaluate; the "
        f"evaluation classifier is {100 * real['classifier_accuracy']:.1f} % accurate on the "
        f"held-out real half. Target: {_target(experiment, labelled)}. Classifier sure: the "
        f"share of samples whose most probable class has p > {SURE}. steps/s: over the median "
        "training epoch without an evaluation (shared 2-core CPU: other jobs ran beside it); "
        "wall time: the whole run, compiling, evaluations and checkpoints included"
        f"{_RESUMED_NOTE if any(r['wall_seconds'] is None for r in results.values()) else ''}."
        f"{_LABELLED_NOTE if labelled else ''}",
        "",
        *_untrained_note(untrained, command),
        *_cadence_note(experiment, results),
        (
            f"Samples (the first {GRID_SIDE * GRID_SIDE} scored images of each run; of a run "
            f"with a label accuracy, row k: the first {GRID_SIDE} generated for class k):"
            if labelled
            else f"Samples (the first {GRID_SIDE * GRID_SIDE} scored images of each run):"
        ),
        "",
        markdown_table(list(results), [grids]),
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


def _untrained_note(untrained: dict | None, command: str) -> list[str]:
    """Lines naming the runs a partial report (--partial) leaves out, and the commands that
    train them: first a resume of each stopped one (untrained: name -> its resume command, or
    None for a run not started)."""
    if not untrained:
        return []
    resumes = [resume for resume in untrained.values() if resume]
    return [
        f"**Partial results: not trained yet: {', '.join(untrained)}.** To complete this page:",
        "",
        "```bash",
        *(f"{resume}   # a stopped run" for resume in resumes),
        command.replace(" --partial", ""),
        "```",
        "",
    ]


# Why a run has no wall time (report.run_result): its whole run was never timed.
_RESUMED_NOTE = " (—: the run was stopped and finished by gan.train --resume)"
_LABELLED_NOTE = (
    " A conditional run is scored on samples of every class in turn, with their labels: label "
    "accuracy is the share the classifier assigns to the class they were generated for (the "
    "real images' is the classifier's accuracy), the Fréchet distance within class its mean "
    "over the classes of samples of class c against real images of class c."
)


def _cadence_note(experiment: Experiment, results: dict) -> list[str]:
    """Lines naming the runs scored during training at another cadence than the experiment's
    --eval-every (experiments.sweep reuses a finished run whatever its cadence, which does not
    change what it trains); none if every run has the experiment's, or it sets none."""
    cadence = experiment.options.get("eval_every")
    if cadence is None:
        return []
    others: dict = {}
    for name, result in results.items():
        every = result["config"]["eval_every"]
        if every != cadence:
            others.setdefault(every, []).append(name)
    if not others:
        return []
    runs = "; ".join(
        f"{', '.join(names)} every {every} epochs"
        for every, names in sorted(others.items(), key=lambda item: str(item[0]))
    )
    return [
        f"Every run was scored every {cadence} epochs during training, except: {runs}. How "
        "often a run is scored does not change what it trains (tests/test_evaluate.py), only "
        "how many points its curves have.",
        "",
    ]


def _conditional_cells(scores: dict) -> list[str]:
    """The label accuracy and mean Fréchet distance within class of a row ("—" for
    unconditional samples)."""
    if "label_accuracy" not in scores:
        return ["—", "—"]
    return [
        f"{100 * scores['label_accuracy']:.1f} %",
        f"{scores['mean_class_frechet_distance']:.2f}",
    ]


def _target(experiment: Experiment, labelled: bool) -> str:
    """The quality target _meets checks, in words; its label accuracy only if `labelled`."""
    fd, label = experiment.fd_target, experiment.label_accuracy_target
    return (
        f"classifier score >= {TARGET_SCORE_RATIO} of the real images', {TARGET_CLASSES} "
        f"classes covered, KL <= {experiment.kl_target}"
        + ("" if fd is None else f", Fréchet distance <= {fd}")
        + ("" if label is None or not labelled else f", label accuracy >= {100 * label:.0f} %")
    )


def _meets(experiment: Experiment, generated: dict, real: dict) -> bool:
    return meets_target(
        generated,
        real,
        experiment.kl_target,
        experiment.label_accuracy_target,
        experiment.fd_target,
    )


def _repeats_section(experiment: Experiment, results: dict, real: dict) -> list[str]:
    """Lines of a table of each repeated configuration's mean ± standard deviation over its
    seeds (none if the experiment repeats nothing), with the quality target judged on the
    means (the fewest classes covered of any seed) and, if the experiment has a wall-time
    target, on its slowest seed."""
    rows = []
    for name, runs in experiment.repeats.items():
        repeated = [results[run] for run in runs if run in results]
        if len(repeated) < 2:
            continue
        generated = [r["generated"] for r in repeated]
        means = {
            key: statistics.mean(g[key] for g in generated)
            for key in ("frechet_distance", "classifier_score", "class_kl", "label_accuracy")
            if all(key in g for g in generated)
        }
        means["classes_covered"] = min(g["classes_covered"] for g in generated)
        walls = [r["wall_seconds"] for r in repeated]
        slowest = None if None in walls else max(walls)
        in_time = experiment.wall_target is None or (
            slowest is not None and slowest <= experiment.wall_target
        )
        ratio = [g["classifier_score"] / real["classifier_score"] for g in generated]
        rows.append(
            [
                name,
                str(len(generated)),
                mean_sd([g["frechet_distance"] for g in generated], 2),
                mean_sd(ratio, 3),
                str(means["classes_covered"]),
                mean_sd([g["class_kl"] for g in generated], 4),
                _duration(slowest),
                "met" if _meets(experiment, means, real) and in_time else "not met",
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
        "slowest wall time",
        "quality target (on the means)",
    ]
    time_clause = (
        ""
        if experiment.wall_target is None
        else f", and every seed's run within {_duration(experiment.wall_target)} of wall time"
    )
    target = (
        f"Quality target: {_target(experiment, labelled=True)}, on the means over the seeds"
        f"{time_clause}."
    )
    return [
        "Mean ± standard deviation over seeds:",
        "",
        markdown_table(header, rows),
        "",
        target,
        "",
    ]


def mean_sd(values: list, digits: int) -> str:
    """'mean ± standard deviation' of `values` (two or more), each with `digits` decimals."""
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _value(value) -> str:
    """An option's value in a table: as the command line writes it (layer widths 256,512)."""
    return "—" if value is None else str(shown(value))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _plot_curves(path: Path, experiment: Experiment, results: dict, real: dict, x: str) -> None:
    """Fréchet distance and classifier score of every run against `x` ("epoch" or
    "train_seconds"): a colour and line style per configuration, its seeds (Experiment.repeats)
    alike and named once in the legend, beside the real images' scores and the quality target."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    configuration = {run: name for name, runs in experiment.repeats.items() for run in runs}
    names = list(dict.fromkeys(configuration.get(run, run) for run in results))
    colours = plt.get_cmap("tab10").colors
    styles = ("-", "--", "-.", ":")
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    named = set()
    for run, result in results.items():
        name = configuration.get(run, run)
        index = names.index(name)
        seeds = len([r for r in experiment.repeats.get(name, (run,)) if r in results])
        xs = [point[x] for point in result["curve"]]
        style = {
            "color": colours[index % len(colours)],
            "linestyle": styles[index // len(colours) % len(styles)],
            "marker": "o",
            "markersize": 2.5,
            "linewidth": 1.2,
            "label": None if name in named else _legend(name, seeds),
        }
        named.add(name)
        left.plot(xs, [p["frechet_distance"] for p in result["curve"]], **style)
        right.plot(xs, [p["classifier_score"] for p in result["curve"]], **style)
    left.axhline(real["frechet_distance"], color="black", linewidth=1, label="real images")
    right.axhline(real["classifier_score"], color="black", linewidth=1, label="real images")
    target = {"color": "black", "linestyle": ":", "linewidth": 1, "label": "target"}
    if experiment.fd_target is not None:
        left.axhline(experiment.fd_target, **target)
    right.axhline(TARGET_SCORE_RATIO * real["classifier_score"], **target)
    label = {
        "epoch": "epoch",
        "train_seconds": "training wall time (s; evaluations and checkpoints excluded)",
    }[x]
    left.set(xlabel=label, ylabel="Fréchet distance ↓ (log scale)", yscale="log")
    right.set(xlabel=label, ylabel="classifier score ↑")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    handles, labels = right.get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)


def _legend(name: str, seeds: int) -> str:
    return f"{name} ({seeds} seeds)" if seeds > 1 else name
