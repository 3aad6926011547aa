"""Self-conditioning (Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs"):
the best preset given cluster ids in place of class labels, so that no label is used.

    python -m experiments.self_condition [--clusters 50] [--seeds 0 1 2] [--epochs 300]

The unconditional `best` falls short of the classifier-score target because some of its
samples lie between digits (experiments/README.md, section 5), and given the true labels the
same techniques pass it (section 6). Here the labels are replaced by what the images alone
give: k-means clusters of their pixels (seeded; CLUSTER_SEED). The script writes the images
with their cluster ids to LOGDIR/clusters-K.npz, trains on them as a user would,

    python -m gan.train --preset best --conditional --data LOGDIR/clusters-K.npz --seed S

once per seed (a finished run is kept, not trained again), and scores each generator with
gan.evaluate's protocol against the labelled real images, as an unconditional one: its samples
draw each cluster at that cluster's share of the images (SAMPLE_SEED shuffles the order), so
that the class balance is the data's. The dataset's labels are used by the evaluation
classifier only, as for every run. Writes OUT/README.md (the table, mean ± sd over the seeds,
how well the clusters match the classes), OUT/results.json (every score) and OUT/<run>.png
(the first 100 scored samples).
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import zipfile
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
from gan.tables import markdown_table

CLUSTER_SEED = 0
SAMPLE_SEED = 0  # the order of the samples' cluster ids
MAX_ITERATIONS = 300
PROG = "python -m experiments.self_condition"


def kmeans(images: np.ndarray, k: int, seed: int = CLUSTER_SEED) -> np.ndarray:
    """Cluster ids int64 (N,) in 0..k-1 of uint8 images (N, 28, 28): k-means on the pixels
    scaled to [0, 1], k-means++ initialisation from numpy.random.default_rng(seed), Lloyd's
    iterations until no image changes cluster (at most MAX_ITERATIONS). No cluster is empty:
    every centre starts on an image, and a centre left without images keeps its place."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    nearest = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):  # each next centre drawn with probability ~ squared distance
        centre = x[rng.choice(len(x), p=nearest / nearest.sum())]
        centres.append(centre)
        nearest = np.minimum(nearest, ((x - centre) ** 2).sum(axis=1))
    centres = np.stack(centres)
    assignment = None
    for _ in range(MAX_ITERATIONS):
        distances = (centres**2).sum(axis=1)[None] - 2 * x @ centres.T
        new = distances.argmin(axis=1)
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        for j in range(k):
            members = x[assignment == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return assignment.astype(np.int64)


def cluster_sequence(clusters: np.ndarray, n: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """n cluster ids, each cluster as often as its share of `clusters` (N,) in 0..K-1 (rounded
    down, the remainder to the largest shares), in an order shuffled by `seed`."""
    k = int(clusters.max()) + 1
    shares = np.bincount(clusters, minlength=k) / len(clusters) * n
    counts = np.floor(shares).astype(int)
    counts[np.argsort(counts - shares)[: n - counts.sum()]] += 1  # the largest remainders
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), counts))


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
    """Clusters, trains, scores and writes OUT (see the module docstring); returns README.md's
    text. spec: the evaluation classifier's gan.classifier.ClassifierSpec (None: the default)."""
    from gan import data
    from gan.evaluation import Evaluator
    from gan.images import make_grid, save_png
    from gan.sampling import GeneratorSource, generate

    logdir, out = Path(args.logdir), Path(args.out)
    images, labels = data.load_labelled("mnist", args.data, None, None)
    names = {seed: f"k{args.clusters}-seed{seed}" for seed in args.seeds}
    for name in names.values():  # before any training: a kept run must be usable
        if (logdir / name).exists():
            _check_finished_run(logdir / name, args.epochs)
    clusters_file = logdir / f"clusters-{args.clusters}.npz"
    clusters = _clusters(clusters_file, images, args.clusters)
    for seed, name in names.items():
        if not (logdir / name).exists():
            _train(clusters_file, logdir, name, seed, args.epochs)

    evaluator = Evaluator.for_dataset("mnist", args.data, cache_dir=args.cache_dir, spec=spec)
    sequence = cluster_sequence(clusters, evaluator.held_out_count)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in names.values():
        generator = GeneratorSource.resolve(run=str(logdir / name)).load()
        samples = generate(generator, len(sequence), 0, labels=sequence)
        rows[name] = {**evaluator.score(samples), **confidence(evaluator, samples)}
        save_png(make_grid(samples, GRID_SIDE, GRID_SIDE, scale=GRID_SCALE), out / f"{name}.png")
    real = {**evaluator.real_scores(), **confidence(evaluator, evaluator.held_out_images)}
    cluster_purity = purity(clusters, labels)
    text = _report(args, command, rows, real, cluster_purity, clusters_file)
    (out / "README.md").write_text(text)
    record = {"command": command, "clusters": args.clusters, "purity": cluster_purity}
    record.update(epochs=args.epochs, runs=rows, real=real)
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    return text


def _clusters(path: Path, images: np.ndarray, k: int) -> np.ndarray:
    """The cluster ids of `images` kept in `path` (the images with their ids, as gan.train
    reads them), written first if it does not exist. Raises UsageError if it holds other
    images (another --data) or cannot be read."""
    from gan.errors import UsageError
    from gan.rundir import write_atomically

    if not path.exists():
        clusters = kmeans(images, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, images=images, labels=clusters)
        write_atomically(path, buffer.getvalue())  # a kill leaves no half-written file
        return clusters
    try:
        with np.load(path) as kept:
            kept_images, clusters = kept["images"], kept["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UsageError(f"cannot read {path} ({error}): remove it to cluster again") from None
    if not np.array_equal(kept_images, images):
        raise UsageError(f"{path} holds other images than --data: give another --logdir")
    return clusters


def _check_finished_run(run_dir: Path, epochs: int) -> None:
    """A run kept from an earlier call must be finished and as long as asked for."""
    from gan.errors import UsageError
    from gan.rundir import read_config

    if not (run_dir / "generator.keras").exists():
        raise UsageError(
            f"{run_dir} is unfinished: finish it with python -m gan.train --resume "
            f"{run_dir}, or remove it"
        )
    trained = read_config(run_dir).epochs
    if trained != epochs:
        raise UsageError(f"{run_dir} trained {trained} epochs, not --epochs {epochs}")


def _train(clusters_file: Path, logdir: Path, name: str, seed: int, epochs: int) -> None:
    command = [
        sys.executable,
        "-m",
        "gan.train",
        "--preset",
        "best",
        "--conditional",
        "--data",
        str(clusters_file.resolve()),
        "--seed",
        str(seed),
        "--epochs",
        str(epochs),
        "--logdir",
        str(logdir.resolve()),
        "--run",
        name,
    ]
    print(f"== {PROG}: training {logdir / name}", flush=True)
    if subprocess.run(command, cwd=PROJECT_ROOT).returncode != 0:
        raise RuntimeError(f"training {logdir / name} failed (its output is above)")


def _report(args, command, rows, real, cluster_purity, clusters_file) -> str:
    ratio = real["classifier_score"]
    header = [
        "run",
        "Fréchet distance ↓",
        "classifier score ↑ (÷ real)",
        "classes covered",
        "KL(classes ‖ uniform) ↓",
        "mean entropy (nats)",
        f"classifier sure (p > {SURE})",
    ]

    def cells(name, g):
        return [name, *score_cells(g, ratio), *confidence_cells(g)]

    table = [cells(name, g) for name, g in rows.items()]
    table.append(cells("real images (held-out half)", real))
    lines = [
        f"# Self-conditioning: best on {args.clusters} k-means clusters instead of labels (MNIST)",
        "",
        f"`{command}`",
        "",
        markdown_table(header, table, numbers_from=1),
        "",
    ]
    if len(rows) > 1:

        def over_seeds(key, digits, scale=1.0):
            return mean_sd([g[key] / scale for g in rows.values()], digits)

        lines += [
            f"Mean ± sd over the {len(rows)} seeds: Fréchet distance "
            f"{over_seeds('frechet_distance', 2)}, classifier score ÷ real "
            f"{over_seeds('classifier_score', 3, ratio)}, KL {over_seeds('class_kl', 4)}; "
            f"fewest classes covered {min(g['classes_covered'] for g in rows.values())}.",
            "",
        ]
    lines += [
        f"Each run: `python -m gan.train --preset best --conditional --data "
        f"{from_project_root(clusters_file)} --seed S --epochs {args.epochs}`, trained on the "
        f"{args.clusters} k-means clusters (seed {CLUSTER_SEED}) of the pixels of the images of "
        f"{from_project_root(args.data)} as its classes; no label of the data set is used in "
        f"training or sampling. The clusters hold {cluster_purity:.1%} of the images with their "
        "cluster's most common class (their purity). Scores of "
        f"{real['n']:,} samples (noise seed 0), each cluster drawn at its share of the images "
        "(order shuffled with seed "
        f"{SAMPLE_SEED}), scored unconditionally with gan.evaluate's protocol against the "
        "held-out real images (the last row). Mean entropy: of the classifier's p(y|x); "
        f"classifier sure: the share of samples whose most probable class has p > {SURE}.",
        "",
        "Samples (the first 100 scored images of each run):",
        "",
        markdown_table(
            list(rows), [[f"![{name}]({name}.png)" for name in rows]], numbers_from=len(rows)
        ),
        "",
    ]
    return "\n".join(lines)


def _parser():
    from gan.cli import Parser, whole_number

    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clusters", type=whole_number(2), default=50, help="k-means clusters K (default: 50)"
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=whole_number(0),
        default=[0, 1, 2],
        metavar="SEED",
        help="gan.train --seed of each run (default: 0 1 2)",
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
        help="where the clusters file and the runs go (default: logs/experiments/self_condition)",
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
