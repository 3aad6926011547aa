"""Exercise 4, the upgraded GAN: the textbook MLP GAN (mlp) against the usual upgraded MLP GAN
(mlp-bn: LeakyReLU, BatchNorm in the generator, wider and deeper) and a DCGAN (dcgan), on MNIST.

    python -m experiments.upgraded [--quick]    (see --help; writes experiments/results/upgraded/)

The architectures are gan.models' (`--arch`); every other option is the textbook's: 100
epochs of batches of 128, Adam 2e-4 (beta_1 0.5). The best of the three (mlp-bn, by Fréchet
distance and classifier score in experiments/results/upgraded) and the DCGAN, which was still
improving at epoch 100, are also trained for 300 epochs, for the quality target.
experiments/README.md discusses the differences.
"""

import sys

from experiments.sweep import Experiment, main

EXPERIMENT = Experiment(
    name="upgraded",
    title="Upgraded GAN: textbook MLP vs MLP with BatchNorm and LeakyReLU vs DCGAN (MNIST)",
    runs={
        **{arch: {"arch": arch} for arch in ("mlp", "mlp-bn", "dcgan")},
        "mlp-bn-300": {"arch": "mlp-bn", "epochs": 300, "eval_every": 20},
        "dcgan-300": {"arch": "dcgan", "epochs": 300, "eval_every": 20},
    },
    options={"epochs": 100, "eval_every": 10},
)

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
