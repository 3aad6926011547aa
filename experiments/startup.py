"""The start-up of `python -m gan.train`, phase by phase, up to its first training step:

    python -m experiments.startup --data PATH [--launched SECONDS]

makes the calls gan.train makes before training, in the same order, on the default options,
times each, and prints one JSON object, phase -> seconds. --launched is the time.time() at
which the caller started this process: the first phase is the interpreter's start-up.
experiments.end_to_end runs this in a fresh process each round (TensorFlow is imported once
per process).
"""

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

STARTED = time.time()  # the standard-library imports above count as the interpreter's start-up


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.startup", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", required=True, help="images, as gan.train's --data")
    parser.add_argument("--launched", type=float, help="time.time() when this was started")
    args = parser.parse_args()

    phases = {}
    if args.launched is not None:
        phases["Python start-up"] = STARTED - args.launched
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] = now - clock
        clock = now

    from gan import data, train
    from gan.config import Config

    lap("import gan.train (no TensorFlow)")
    if importlib.util.find_spec("jax"):
        import jax  # noqa: F401 (TensorFlow Lite's util imports it whenever it is installed)

        lap("import jax (TensorFlow imports it if installed)")
    import tensorflow  # noqa: F401 (timed on its own: Training imports it first)

    lap("import TensorFlow (and Keras)")
    from gan import callbacks  # noqa: F401 (Training.run imports it)

    lap("import gan.callbacks (TensorBoard plugins, gan.evaluate)")
    images = data.load("mnist", args.data)
    lap("load the images")
    with tempfile.TemporaryDirectory() as logdir:
        config = Config(data=args.data, logdir=logdir, run="startup")
        training = train.Training(config, Path(logdir, "startup"), images)
        lap("build: networks, optimizers, run directory, first checkpoint")
        # The first compiled call traces the step; a second one is the same without tracing.
        per_call = training.config.steps_per_call
        dataset = data.make_dataset(images, config.batch_size, config.seed, epochs=2)
        for phase in ("first compiled call", "second compiled call"):
            training.model.fit(dataset, epochs=1, steps_per_epoch=per_call, verbose=0)
            lap(phase)
    first, second = phases.pop("first compiled call"), phases.pop("second compiled call")
    phases["trace the step (first compiled call less a later one)"] = first - second
    print(json.dumps(phases))


if __name__ == "__main__":
    main()
