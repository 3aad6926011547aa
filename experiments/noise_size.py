"""Exercise 2, noise size: the textbook MLP GAN with noise vectors of 2, 16, 64, 128 (the
textbook's) and 256 numbers, on MNIST.

    python -m experiments.noise_size [--quick]   (see --help; results in experiments/results/)

Only the generator's input layer changes; everything else is the textbook's: 100 epochs,
batch 128, Adam 2e-4.
"""

import sys

from experiments.sweep import Experiment, main

EXPERIMENT = Experiment(
    name="noise_size",
    title="Noise size: the textbook MLP GAN with noise of 2 to 256 numbers (MNIST)",
    runs={f"noise-{size}": {"noise_dim": size} for size in (2, 16, 64, 128, 256)},
    options={"arch": "mlp", "epochs": 100, "eval_every": 10},
)

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
