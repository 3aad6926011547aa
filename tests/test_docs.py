"""The documentation: every relative link resolves, and the numbers the README shows are those
of the committed results file they come from (so they cannot go stale unnoticed)."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from conftest import PROJECT_ROOT

DOCS = ["README.md", "CHANGELOG.md", "experiments/README.md", *sorted(
    str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "docs").glob("*.md")
)]  # fmt: skip
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links and images: [text](target)


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc):
    path = PROJECT_ROOT / doc
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue  # web addresses and anchors within the page
        file = target.split("#")[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert broken == []


def _results(path: str) -> dict:
    return json.loads((PROJECT_ROOT / "experiments/results" / path / "results.json").read_text())


def _mean_row(label: str, scores: list[dict], real: dict) -> str:
    """A README results row: the mean ± sd over seeds of each run's gan.evaluate scores."""

    def mean_sd(values, digits):
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    ratios = [g["classifier_score"] / real["classifier_score"] for g in scores]
    return (
        f"| {label} | {mean_sd([g['frechet_distance'] for g in scores], 2)} "
        f"| {mean_sd(ratios, 3)} of real | {min(g['classes_covered'] for g in scores)} "
        f"| {statistics.mean(g['class_kl'] for g in scores):.4f} |"
    )


def test_readme_results_are_those_of_the_committed_results():
    quality = _results("quality/mnist")
    real, runs = quality["real"], quality["runs"]
    seeds = ("", "-seed1", "-seed2")
    textbook = runs["textbook"]["generated"]
    expected = [
        _mean_row(
            "`best`, mean ± sd of 3 seeds",
            [runs[f"best{seed}"]["generated"] for seed in seeds],
            real,
        ),
        _mean_row(
            "`best --self-condition 0` (no clusters), mean ± sd of 3 seeds",
            [runs[f"best-without-self_condition{seed}"]["generated"] for seed in seeds],
            real,
        ),
        _mean_row(
            "`best --conditional` (given the labels), mean ± sd of 3 seeds",
            [runs[f"best-with-conditional{seed}"]["generated"] for seed in seeds],
            real,
        ),
        f"| textbook, 300 epochs | {textbook['frechet_distance']:.2f} "
        f"| {textbook['classifier_score'] / real['classifier_score']:.3f} of real "
        f"| {textbook['classes_covered']} | {textbook['class_kl']:.4f} |",
        f"| real (held-out half) | {real['frechet_distance']:.2f} "
        f"| {real['classifier_score']:.2f} | {real['classes_covered']} | {real['class_kl']:.4f} |",
    ]
    assert runs["textbook"]["epochs"] == 300
    assert all(runs[f"best{seed}"]["config"]["self_condition"] == 50 for seed in seeds)
    readme = (PROJECT_ROOT / "README.md").read_text().splitlines()
    for row in expected:
        assert row in readme
