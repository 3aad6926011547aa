"""How much do the evaluation scores depend on the classifier? The same samples, scored under
classifiers trained with different seeds (everything else equal).

    python -m experiments.classifier_seeds --run logs/mnist-mlp-100 --seeds 0 1 2 3 4 \
        --out experiments/results/classifier_seeds.md

The samples are drawn once (noise seed 0, as many as the held-out real images); each classifier
seed trains its own classifier (cached like any other) and scores them and the real floor.
Writes a markdown table with one row per seed and the mean and standard deviation.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from gan.classifier import ClassifierSpec
from gan.evaluation import SCORES, Evaluator
from gan.rundir import read_config
from gan.sampling import GeneratorSource, generate
from gan.tables import markdown_table

COLUMNS = [  # (heading, result part, score name, format)
    ("classifier accuracy", "real", "classifier_accuracy", "{:.4f}"),
    ("FD samples", "generated", "frechet_distance", "{:.2f}"),
    ("FD real", "real", "frechet_distance", "{:.3f}"),
    ("score samples", "generated", "classifier_score", "{:.3f}"),
    ("score real", "real", "classifier_score", "{:.3f}"),
    ("classes samples", "generated", "classes_covered", "{:.0f}"),
    ("KL samples", "generated", "class_kl", "{:.4f}"),
    ("KL real", "real", "class_kl", "{:.4f}"),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory whose generator is scored")
    parser.add_argument("--data", help="real images with labels (default: the run's --data)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cache-dir", help="classifier cache (default: gan.classifier's)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)

    config = read_config(args.run)
    source = GeneratorSource.resolve(run=args.run)
    samples = None
    rows = []
    for seed in args.seeds:
        evaluator = Evaluator.for_dataset(
            config.dataset,
            args.data or config.data,
            source=None if args.data else config.source,  # the run's real images, else --data's
            cache_dir=args.cache_dir,
            spec=ClassifierSpec(seed=seed),
        )
        if samples is None:
            samples = generate(source.load(), evaluator.held_out_count, seed=0)
        result = evaluator.evaluate(samples)
        rows.append([result[part][name] for _, part, name, _ in COLUMNS])
        print(f"classifier seed {seed}: {rows[-1]}", flush=True)

    table = _markdown(args, source, len(samples), np.array(rows, dtype=np.float64))
    print(table)
    if args.out:
        with open(args.out, "w") as file:
            file.write(table + "\n")
    return 0


def _markdown(args, source, count: int, rows: np.ndarray) -> str:
    command = shlex.join(["python", "-m", "experiments.classifier_seeds", *sys.argv[1:]])
    mean = rows.mean(axis=0)
    sd = rows.std(axis=0, ddof=1) if len(rows) > 1 else np.zeros_like(mean)
    table = markdown_table(
        ["classifier seed", *(heading for heading, *_ in COLUMNS)],
        [
            *([seed, *_cells(row)] for seed, row in zip(args.seeds, rows, strict=True)),
            ["mean ± sd", *(f"{m} ± {s}" for m, s in zip(_cells(mean), _cells(sd), strict=True))],
        ],
        numbers_from=0,
    )
    lines = [
        f"# Scores of {source.describe()} under classifiers trained with different seeds",
        "",
        f"```bash\n{command}\n```",
        "",
        f"{count} samples (noise seed 0) against the reference half of the real images; "
        f"'real' is the held-out half ({', '.join(SCORES)}).",
        "",
        table,
    ]
    return "\n".join(lines)


def _cells(values) -> list[str]:
    return [fmt.format(v) for v, (*_, fmt) in zip(values, COLUMNS, strict=True)]


if __name__ == "__main__":
    sys.exit(main())
