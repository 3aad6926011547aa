"""The quality experiment: the `best` preset (gan.config.PRESETS) against its ablations (best
without each of its techniques) and the baselines (the textbook, and mlp-bn with the textbook's
other options), on the 10,000 MNIST digits and on 10,000 Fashion-MNIST images.

    python -m experiments.quality [--quick]   (see --help; writes experiments/results/quality/)

Every run trains as long as `best` does and is scored with gan.evaluate every 10 epochs;
`best` runs with three seeds, whose mean ± standard deviation the results give, since one GAN
run says little. The results (quality/mnist/ and quality/fashion/) hold the table, 10x10
sample grids, and the scores against epochs and against training wall time.
"""

import sys

from experiments.sweep import SHARED_DATA, Experiment, main
from gan.config import PRESETS, Config

BEST = PRESETS["best"]
SEEDS = (0, 1, 2)
DEFAULTS = Config()


def runs() -> dict:
    """run name -> options: best with each seed, best without each technique (that option at
    its textbook value), and the two baselines."""
    techniques = [name for name in BEST if name != "epochs"]
    return {
        **{_seeded("best", seed): {"preset": "best", "seed": seed} for seed in SEEDS},
        **{
            f"best-without-{name}": {"preset": "best", name: getattr(DEFAULTS, name)}
            for name in techniques
        },
        "mlp-bn": {"arch": "mlp-bn"},
        "textbook": {},
    }


def _seeded(name: str, seed: int) -> str:
    return name if seed == 0 else f"{name}-seed{seed}"


def experiment(name: str, title: str, **data) -> Experiment:
    return Experiment(
        name=f"quality/{name}",
        title=title,
        runs=runs(),
        options={"epochs": BEST.get("epochs", DEFAULTS.epochs), "eval_every": 10},
        train_images=10_000,
        repeats={"best": tuple(_seeded("best", seed) for seed in SEEDS)},
        module="quality",
        **data,
    )


EXPERIMENTS = (
    experiment("mnist", "Quality: the best preset, its ablations and the baselines (MNIST)"),
    experiment(
        "fashion",
        "Quality: the best preset, its ablations and the baselines (Fashion-MNIST)",
        dataset="fashion_mnist",
        data=SHARED_DATA / "fashion-mnist",
    ),
)

if __name__ == "__main__":
    if any(arg.startswith("--out") for arg in sys.argv[1:]):
        print(
            "python -m experiments.quality: error: --out is not supported: each data set has "
            "its own results directory under experiments/results/quality/",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(max([main(experiment) for experiment in EXPERIMENTS]))
