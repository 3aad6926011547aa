"""An MLP GAN on MNIST for Keras 3: a subclassed `keras.Model` with a compiled `train_step`.

Modules: `config` (options), `data` (images; `mnist/` holds the bundled digits), `models`
(networks), `losses` and `augment` (what the step may use), `gan` (the training step),
`optimizers` (FusedAdam), `callbacks` (everything that watches training), `checkpoints` (the
training state), `rundir` (the run directory: its files, lock and atomic writes), `safety`
(signals, NaN guard), `distribute` (strategies), `train` (the CLI); evaluation: `generate`
(samples from a trained generator), `evaluate` (scores against real images), `classifier` (the
network the scores use), `metrics` (the statistics), `images` (grids); `cli` (what the command
lines share), `errors` (UsageError, the bad input they report in one line).
"""

import os

# TensorFlow's C++ INFO/WARNING chatter drowns the progress bar; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
