"""Exercise 1, deeper networks: the textbook MLP GAN against one and two extra hidden layers in
both the generator and the discriminator, on MNIST.

    python -m experiments.depth [--quick]      (see --help; writes experiments/results/depth/)

The extra layers widen towards the image in the generator (256-512 -> 256-512-1024 ->
256-512-1024-1024) and towards the input in the discriminator (256 -> 512-256 ->
1024-512-256), each followed by ReLU (and dropout 0.3 in the discriminator) as in the
textbook's layers. Everything else is the textbook's: 100 epochs, batch 128, Adam 2e-4.
"""

import sys

from experiments.sweep import Experiment, main

EXPERIMENT = Experiment(
    name="depth",
    title="Deeper networks: textbook MLP GAN with 0, 1 and 2 extra hidden layers (MNIST)",
    runs={
        "textbook": {"g_hidden": (256, 512), "d_hidden": (256,)},
        "plus-1-layer": {"g_hidden": (256, 512, 1024), "d_hidden": (512, 256)},
        "plus-2-layers": {"g_hidden": (256, 512, 1024, 1024), "d_hidden": (1024, 512, 256)},
    },
    options={"arch": "mlp", "epochs": 100, "eval_every": 10},
)

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
