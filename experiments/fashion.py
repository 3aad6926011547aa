"""Exercise 3, Fashion-MNIST: the textbook MLP GAN and the best architecture on MNIST (mlp-bn,
see experiments/results/upgraded) trained on Fashion-MNIST and evaluated against it.

    python -m experiments.fashion [--quick]     (see --help; writes experiments/results/fashion/)

Training uses the first 10,000 images of ../shared/data/fashion-mnist (its t10k set, the first
file in name order), as many as the MNIST runs have; the evaluation uses all 70,000, with its
own classifier (trained once on half of them and cached). Every other option is the
textbook's: 100 epochs of batches of 128, Adam 2e-4 (beta_1 0.5).
"""

import sys

from experiments.sweep import SHARED_DATA, Experiment, main

EXPERIMENT = Experiment(
    name="fashion",
    title="Fashion-MNIST: the textbook MLP GAN and the best architecture on MNIST",
    runs={arch: {"arch": arch} for arch in ("mlp", "mlp-bn")},
    options={"epochs": 100, "eval_every": 10},
    dataset="fashion_mnist",
    data=SHARED_DATA / "fashion-mnist",
    train_images=10_000,
)

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
