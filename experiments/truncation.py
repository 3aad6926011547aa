"""What the truncation trick buys and costs: trained generators scored with noise drawn from
N(0, 1) truncated to [-T, T] (gan.generate / gan.evaluate --truncation T), for several T.

    python -m experiments.truncation --out experiments/results/truncation.md

By default the three seeds of the quality experiment's `best` preset on MNIST
(logs/experiments/quality/mnist/best, best-seed1, best-seed2: `python -m experiments.quality
--dataset mnist` trains them). Each run's generator is scored like gan.evaluate --run does
(noise seed 0, as many samples as the held-out real images, against all of the run's real
images), once per T; "none" is the untruncated noise training used. Besides the scores the
table gives the classifier's mean entropy on the samples, what keeps their classifier score
below the real images' when the classes are balanced.
"""

from __future__ import annotations

import shlex
import sys

from experiments.report import confidence, confidence_cells, score_cells
from experiments.timing import from_project_root, report
from gan.tables import markdown_table

RUNS = [f"logs/experiments/quality/mnist/{name}" for name in ("best", "best-seed1", "best-seed2")]
TRUNCATIONS = [None, 2.0, 1.5, 1.0, 0.5]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    from gan.cli import native_stderr_held_back
    from gan.errors import UsageError

    with native_stderr_held_back():
        try:
            rows, real = _score(args.runs, args.truncations, args.cache_dir)
        except UsageError as error:
            print(f"python -m experiments.truncation: error: {error}", file=sys.stderr)
            return 2
    command = shlex.join(["python", "-m", "experiments.truncation", *argv])
    report(_table(rows, real, command), args.out)
    return 0


def _score(runs: list[str], truncations: list, cache_dir) -> tuple[list, dict]:
    """Rows (run, T, generated scores + confidence) and the real floor of the runs' data set.
    Every run is checked (a run directory with a generator, all on the same images) before
    anything is scored. The samples are drawn and scored as gan.evaluate does
    (GeneratorSource.samples)."""
    from gan.errors import UsageError
    from gan.evaluation import Evaluator
    from gan.rundir import read_config
    from gan.sampling import GeneratorSource

    configs = [read_config(run) for run in runs]
    sources = [GeneratorSource.resolve(run=run) for run in runs]
    images_of = {(c.dataset, c.data, c.source) for c in configs}
    if len(images_of) > 1:
        raise UsageError("the runs trained on different images: score them apart")
    dataset, data, source = images_of.pop()
    evaluator = Evaluator.for_dataset(dataset, data, source=source, cache_dir=cache_dir)
    rows = []
    for run, generator_source in zip(runs, sources):
        generator = generator_source.load()
        for truncation in truncations:
            images, labels = generator_source.samples(
                generator, evaluator.held_out_count, 0, truncation
            )
            scores = evaluator.score(images, labels)
            rows.append((run, truncation, {**scores, **confidence(evaluator, images)}))
    real = {**evaluator.real_scores(), **confidence(evaluator, evaluator.held_out_images)}
    return rows, real


def _table(rows: list, real: dict, command: str) -> str:
    header = [
        "run",
        "T",
        "Fréchet distance ↓",
        "classifier score (÷ real) ↑",
        "classes covered",
        "KL(classes ‖ uniform) ↓",
        "mean entropy (nats)",
        "classifier sure (p > 0.99)",
    ]
    named = [(from_project_root(run), "none" if t is None else t, g) for run, t, g in rows]
    cells = [
        [
            run,
            truncation,
            *score_cells(g, real["classifier_score"]),
            *confidence_cells(g),
        ]
        for run, truncation, g in [*named, ("real images (held-out half)", "", real)]
    ]
    lines = [
        "# The truncation trick",
        "",
        f"`{command}`",
        "",
        markdown_table(header, cells, numbers_from=2),
        "",
        f"{real['n']:,} samples per row (noise seed 0), scored with gan.evaluate's protocol "
        "against the held-out real images (the last row). T: the noise is N(0, 1) truncated "
        "to [-T, T]; none: untruncated, as in training.",
        "",
    ]
    return "\n".join(lines)


def _parser():
    from gan.cli import Parser, positive_number

    parser = Parser(prog="python -m experiments.truncation", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        default=RUNS,
        metavar="RUN_DIR",
        help="run directories whose generators are scored (default: the quality "
        "experiment's three seeds of best on MNIST)",
    )
    parser.add_argument(
        "--truncations",
        nargs="+",
        type=lambda text: None if text == "none" else positive_number(text),
        default=TRUNCATIONS,
        metavar="T",
        help="the bounds T to score, 'none' for untruncated noise (default: none 2 1.5 1 0.5)",
    )
    parser.add_argument("--cache-dir", help="classifier cache (default: gan.classifier's)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    return parser


if __name__ == "__main__":
    sys.exit(main())
