"""Training speed of the default step in float32, bfloat16 and float16 (--mixed-precision).

    python -m experiments.precision_benchmark --steps 260 --json experiments/results/precision.json

One process, the same images, the default configuration otherwise (steps per call resolved as
`python -m gan.train` does). Variants are timed in interleaved rounds and each reports its best
round, as in experiments/benchmark.py (both time with experiments/timing.py). Results and the
machine they were measured on: docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.timing import (
    DEFAULT_DATA,
    CompiledStep,
    best_of,
    machine,
    ratio_rows,
    time_in_rounds,
)
from gan import data
from gan.config import Config
from gan.tables import markdown_table

PRECISIONS = {"float32": None, "bfloat16": "bfloat16", "float16": "float16"}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.precision_benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=260, help="steps timed per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="images to train on")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    images = data.load_path(args.data)
    base = Config().resolved(len(images), has_gpu=False)
    variants = {
        name: CompiledStep(images, base.replace(mixed_precision=precision))
        for name, precision in PRECISIONS.items()
    }
    rates = time_in_rounds(variants, args.steps, args.rounds)

    best = best_of(rates)
    results = {
        "machine": machine(),
        "config": base.to_json(),
        "variants": {
            name: {"steps_per_second": best[name], "rounds": rates[name]} for name in rates
        },
    }
    print(
        markdown_table(
            ["precision", "steps/s (best of rounds)", "vs float32"],
            ratio_rows(best, "float32"),
            numbers_from=1,
        )
    )
    print(f"load average at the end: {results['machine']['load_average_at_end']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
