"""Self-conditioning's number of clusters: the best preset (gan.config.PRESETS, whose
--self-condition trains on k-means clusters of the images in place of class labels) with each
K of --clusters, on the 10,000 MNIST digits.

    python -m experiments.self_condition [--clusters 10 25 50 100] [--seeds 0] [--epochs 300]

For each K and seed it trains, as a user would,

    python -m gan.train --preset best --self-condition K --data DATA --seed S --epochs E

(a finished run is kept, not trained again), and scores the generator as `python -m
gan.evaluate --run` does: its samples draw each cluster at its share of the images, and are
scored as an unconditional generator's against the labelled real images. The data set's labels
are used by the evaluation classifier, and here to measure how well the run's clusters
(RUN/clusters.npz) match the classes (their purity); never in training or sampling. Writes
OUT/README.md (the table; with several seeds, mean ± sd per K), OUT/results.json (every score)
and OUT/<run>.png (the first 100 scored samples).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments.report import (
    GRID_SCALE,
    GRID_SIDE,
    SURE,
    confidence,
    confidence_cells,
    mean_sd,
    score_cells,
)
from experiments.timing import DEFAULT_DATA, PROJECT_ROOT, from_project_root
from gan.cli import whole_number
from gan.tables import markdown_table

PROG = "python -m experiments.self_condition"


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """The share of images whose class is their cluster's most common class (1: every cluster
    holds one class)."""
    return sum(np.bincount(labels[clusters == j]).max() for j in np.unique(clusters)) / len(labels)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    from gan.cli import native_stderr_held_back
    from gan.errors import UsageError

    with native_stderr_held_back():
        try:
            text = run(args, shlex.join([*PROG.split(), *argv]))
        except (UsageError, RuntimeError) as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
    print(text)
    return 0


def run(args, command: str, spec=None) -> str:
    """Trains, scores and writes OUT (see the module docstring); returns README.md's text.
    spec: the evaluation classifier's gan.classifier.ClassifierSpec (None: the default)."""
    from gan import clusters, data, rundir
    from gan.evaluation import Evaluator
    from gan.images import make_grid, save_png
    from gan.sampling import GeneratorSource

    logdir, out = Path(args.logdir), Path(args.out)
    labels = data.load_labelled("mnist", args.data, None, None)[1]
    names = {
        (k, seed): f"k{k}-seed{seed}" for k in sorted(set(args.clusters)) for seed in args.seeds
    }
    for (k, _), name in names.items():  # before any training: a kept run must be usable
        if (logdir / name).exists():
            _check_finished_run(logdir / name, k, args.epochs)
    for (k, seed), name in names.items():
        if not (logdir / name).exists():
            _train(args.data, logdir, name, k, seed, args.epochs)

    evaluator = Evaluator.for_dataset("mnist", args.data, cache_dir=args.cache_dir, spec=spec)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for (k, _), name in names.items():
        source = GeneratorSource.resolve(run=str(logdir / name))
        n = evaluator.held_out_count
        samples = source.samples(source.load(), n)[0]
        ids = clusters.load(logdir / name / rundir.CLUSTERS, k, len(labels))
        rows[name] = {
            "clusters": k,
            "purity": purity(ids, labels),
            **evaluator.score(samples),
            **confidence(evaluator, samples),
        }
        save_png(make_grid(samples, GRID_SIDE, GRID_SIDE, scale=GRID_SCALE), out / f"{name}.png")
    real = {**evaluator.real_scores(), **confidence(evaluator, evaluator.held_out_images)}
    text = _report(args, command, rows, real)
    (out / "README.md").write_text(text)
    record = {"command": command, "epochs": args.epochs, "runs": rows, "real": real}
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    return text


def _check_finished_run(run_dir: Path, k: int, epochs: int) -> None:
    """A run kept from an earlier call must be finished, and have trained as asked."""
    from gan.errors import UsageError
    from gan.rundir import read_config

    if not (run_dir / "generator.keras").exists():
        raise UsageError(
            f"{run_dir} is unfinished: finish it with python -m gan.train --resume "
            f"{run_dir}, or remove it"
        )
    config = read_config(run_dir)
    if (config.self_condition, config.epochs) != (k, epochs):
        raise UsageError(
            f"{run_dir} trained {config.epochs} epochs with --self-condition "
            f"{config.self_condition}, not --epochs {epochs} with {k}"
        )


def _train(data_path: str, logdir: Path, name: str, k: int, seed: int, epochs: int) -> None:
    command = [sys.executable, "-m", "gan.train", "--preset", "best"]
    command += ["--self-condition", str(k), "--data", str(Path(data_path).resolve())]
    command += ["--seed", str(seed), "--epochs", str(epochs)]
    command += ["--logdir", str(logdir.resolve()), "--run", name]
    print(f"== {PROG}: training {logdir / name}", flush=True)
    if subprocess.run(command, cwd=PROJECT_ROOT).returncode != 0:
        raise RuntimeError(f"training {logdir / name} failed (its output is above)")


def _report(args, command, rows, real) -> str:
    ratio = real["classifier_score"]
    header = [
        "run",
        "clusters K",
        "purity",
        "Fréchet distance ↓",
        "classifier score ↑ (÷ real)",
        "classes covered",
        "KL(classes ‖ uniform) ↓",
        "mean entropy (nats)",
        f"classifier sure (p > {SURE})",
    ]

    def cells(name, g, k="", share=""):
        return [name, k, share, *score_cells(g, ratio), *confidence_cells(g)]

    table = [cells(name, g, g["clusters"], f"{g['purity']:.1%}") for name, g in rows.items()]
    table.append(cells("real images (held-out half)", real))
    lines = [
        "# Self-conditioning: the best preset with K k-means clusters in place of labels (MNIST)",
        "",
        f"`{command}`",
        "",
        markdown_table(header, table, numbers_from=1),
        "",
    ]
    for k in sorted({g["clusters"] for g in rows.values()}):
        runs = [g for g in rows.values() if g["clusters"] == k]
        if len(runs) > 1:
            lines += [
                f"K = {k}, mean ± sd over {len(runs)} seeds: Fréchet distance "
                f"{mean_sd([g['frechet_distance'] for g in runs], 2)}, classifier score ÷ real "
                f"{mean_sd([g['classifier_score'] / ratio for g in runs], 3)}, KL "
                f"{mean_sd([g['class_kl'] for g in runs], 4)}; fewest classes covered "
                f"{min(g['classes_covered'] for g in runs)}.",
                "",
            ]
    lines += [
        f"Each run: `python -m gan.train --preset best --self-condition K --data "
        f"{from_project_root(args.data)} --seed S --epochs {args.epochs}`, trained on the K "
        "k-means clusters of the pixels of its images as its classes (gan.clusters); no label "
        "of the data set is used in training or sampling. Purity: the share of images whose "
        "class is their cluster's most common class. Scores of "
        f"{real['n']:,} samples (noise seed 0), each cluster drawn at its share of the images, "
        "scored unconditionally with gan.evaluate's protocol against the held-out real images "
        "(the last row), as `python -m gan.evaluate --run RUN` scores them. Mean entropy: of "
        "the classifier's p(y|x); classifier sure: the share of samples whose most probable "
        f"class has p > {SURE}.",
        "",
        "Samples (the first 100 scored images of each run):",
        "",
        markdown_table(
            list(rows), [[f"![{name}]({name}.png)" for name in rows]], numbers_from=len(rows)
        ),
        "",
    ]
    return "\n".join(lines)


def _cluster_count(text: str) -> int:
    """An argparse type: a --self-condition K of gan.train, 2..MAX_CLASSES."""
    import argparse

    from gan.config import MAX_CLASSES

    value = whole_number(2)(text)
    if value > MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_CLASSES}, got {value}")
    return value


def _parser():
    from gan.cli import Parser

    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clusters",
        nargs="+",
        type=_cluster_count,
        default=[10, 25, 50, 100],
        metavar="K",
        help="the --self-condition of each run (default: 10 25 50 100)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=whole_number(0),
        default=[0],
        metavar="SEED",
        help="gan.train --seed of each run (default: 0)",
    )
    parser.add_argument(
        "--epochs", type=whole_number(1), default=300, help="epochs per run (default: 300)"
    )
    parser.add_argument(
        "--data",
        default=from_project_root(DEFAULT_DATA),
        help="the labelled real images (default: the 10,000 MNIST digits)",
    )
    parser.add_argument(
        "--logdir",
        default="logs/experiments/self_condition",
        help="where the runs go (default: logs/experiments/self_condition)",
    )
    parser.add_argument(
        "--out",
        default="experiments/results/self_condition",
        help="results directory (default: experiments/results/self_condition)",
    )
    parser.add_argument("--cache-dir", help="classifier cache (default: gan.classifier's)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
