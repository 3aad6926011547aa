"""Training speed of the textbook loop versus our compiled step, against this CPU's limit.

    python experiments/benchmark.py --steps 300 --json experiments/results/benchmark.json

Everything is measured in one process, on the same images and the same networks:

  textbook        the chapter's loop: generator.predict + discriminator.train_on_batch (real,
                  fake) + gan.train_on_batch per step, discriminator.trainable = False trick
  step            our GAN.train_step through fit(), one step per call, no XLA
  step+xla        the same with XLA (jit_compile=True)
  step×K          several steps per compiled call (steps_per_execution), no XLA
  step×K+xla      the same with XLA
  default         what `python -m gan.train` does with default options on this machine
  default, Keras Adam   the same with keras.optimizers.Adam instead of our fused-kernel Adam

All of ours but the last use gan.optimizers.FusedAdam, as `python -m gan.train` does.

Variants are timed in interleaved rounds (round 1: every variant, round 2: every variant, ...)
and each reports its best round, so a burst of load from another process disturbs one round of
every variant instead of all rounds of one. FLOPs per step are counted from the layer shapes
(matrix products only); the ceiling is a large fp32 matrix product timed in the same run, and
the "layer-shape" ceiling is the same product at the shapes of one training step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan import data
from gan.config import Config
from gan.gan import build_gan
from gan.models import mlp_generator
from gan.optimizers import FusedAdam

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "mnist"
LARGE_DATA = (
    PROJECT_ROOT.parent / "shared" / "data" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
)
TEXTBOOK_EPOCHS, TEXTBOOK_IMAGES = 100, 60_000  # the chapter: 100 epochs of MNIST's training set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps timed per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--steps-per-call", type=int, default=78, help="K of the step×K variants")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="images to train on")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--memory-data",
        default=str(LARGE_DATA),
        help="a 60,000-image set for the peak-memory run of `python -m gan.train` ('' to skip)",
    )
    args = parser.parse_args()

    images = data.load_path(args.data)
    batch = Config().batch_size
    variants = _variants(images, args.steps_per_call)
    # Profiled first: later in the process the profiler recorded only part of the ops.
    profile = profile_breakdown(variants["default"])
    timings = time_in_rounds(variants, args.steps, args.rounds)

    default = variants["default"].model
    products = step_matmuls(default.generator, default.discriminator, batch)
    step = flops(products)
    ceiling = max(matmul_gflops(4096, 4096, 4096) for _ in range(args.rounds))
    shape_ceiling = max(layer_shape_gflops(products) for _ in range(args.rounds))
    results = {
        "command": shlex.join(["python", "experiments/benchmark.py", *sys.argv[1:]]),
        "machine": _machine(),
        "data": {"path": args.data, "images": len(images), "batch_size": batch},
        "default_config": _default_config(len(images)).to_json(),
        "flops_per_step": step,
        "matmul_ceiling_gflops": ceiling,
        "layer_shape_ceiling_gflops": shape_ceiling,
        "profile": profile,
        "textbook_discriminator_trains": variants["textbook"].discriminator_trained,
        "variants": {
            name: {
                "steps_per_second": max(rates),
                "rounds": rates,
                "gflops": max(rates) * step / 1e9,
            }
            for name, rates in timings.items()
        },
    }
    default_rate = max(timings["default"])
    results["projected_minutes_100_epochs_60k"] = (
        TEXTBOOK_EPOCHS * (TEXTBOOK_IMAGES // batch) / default_rate / 60
    )
    if args.memory_data:
        results["training_run"] = measure_training_run(args.memory_data)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


# --- the variants ----------------------------------------------------------------------------


class _Textbook:
    """The chapter's loop on Keras 3. Its discriminator has a sigmoid output, one Adam is shared
    by both compiled models, and `discriminator.trainable = False` is set before compiling the
    stacked model -- which on Keras 3 also freezes the discriminator's own train_on_batch."""

    def __init__(self, images: np.ndarray, batch_size: int, noise_dim: int = 128):
        keras.utils.set_random_seed(0)
        self.images, self.batch_size, self.noise_dim = images, batch_size, noise_dim
        self.rng = np.random.default_rng(0)
        self.generator = mlp_generator(noise_dim)
        self.discriminator = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.discriminator.compile(loss="binary_crossentropy", optimizer=optimizer)
        self.discriminator.trainable = False
        self.gan = keras.Sequential([keras.Input((noise_dim,)), self.generator, self.discriminator])
        self.gan.compile(loss="binary_crossentropy", optimizer=optimizer)
        self.before = [w.numpy() for w in self.discriminator.weights]
        self.ones, self.zeros = np.ones((batch_size, 1)), np.zeros((batch_size, 1))
        self(2)  # build the train and predict functions before timing

    def __call__(self, steps: int) -> float:
        """Runs `steps` steps; returns steps per second."""
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "The model does not have any trainable weights."
            for _ in range(steps):
                noise = self.rng.normal(0, 1, (self.batch_size, self.noise_dim))
                fake = self.generator.predict(noise, verbose=0)
                real = self.images[self.rng.integers(0, len(self.images), self.batch_size)]
                self.discriminator.train_on_batch(real, self.ones)
                self.discriminator.train_on_batch(fake, self.zeros)
                self.gan.train_on_batch(noise, self.ones)
        return steps / (time.perf_counter() - started)

    @property
    def discriminator_trained(self) -> bool:
        after = [w.numpy() for w in self.discriminator.weights]
        return any(not np.array_equal(a, b) for a, b in zip(self.before, after, strict=True))


class _Ours:
    """Our GAN under fit(); a call runs a whole number of compiled calls and returns steps/s.
    keras_adam: Keras' own Adam instead of the default fused one (gan.optimizers.FusedAdam)."""

    def __init__(self, images: np.ndarray, config: Config, keras_adam: bool = False):
        keras.utils.set_random_seed(0)
        self.model = build_gan(config, adam=keras.optimizers.Adam if keras_adam else FusedAdam)
        self.per_call = config.steps_per_call
        self.dataset = data.make_dataset(images, config.batch_size, config.seed, epochs=10**6)
        self(2 * self.per_call)  # trace (and XLA-compile) before timing

    def __call__(self, steps: int) -> float:
        steps = max(self.per_call, steps // self.per_call * self.per_call)
        started = time.perf_counter()
        self.model.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        return steps / (time.perf_counter() - started)


def time_in_rounds(variants: dict, steps: int, rounds: int) -> dict:
    """name -> steps/s of each round. Round 1 times every variant, then round 2 every variant,
    ...: a burst of load from another process disturbs one round of every variant instead of
    all rounds of one. Prints each timing to stderr as it is made."""
    timings = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run_steps in variants.items():
            timings[name].append(run_steps(steps))
            print(f"  {name:12s} {timings[name][-1]:8.1f} steps/s", file=sys.stderr, flush=True)
    return timings


def _default_config(image_count: int) -> Config:
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    return Config().resolved(image_count, has_gpu=has_gpu)


def _variants(images: np.ndarray, per_call: int) -> dict:
    base = Config().resolved(len(images), has_gpu=False)
    return {
        "textbook": _Textbook(data.to_float(images), base.batch_size),
        "step": _Ours(images, base.replace(jit=False, steps_per_call=1)),
        "step+xla": _Ours(images, base.replace(jit=True, steps_per_call=1)),
        f"step×{per_call}": _Ours(images, base.replace(jit=False, steps_per_call=per_call)),
        f"step×{per_call}+xla": _Ours(images, base.replace(jit=True, steps_per_call=per_call)),
        "default": _Ours(images, _default_config(len(images))),
        "default, Keras Adam": _Ours(images, _default_config(len(images)), keras_adam=True),
    }


# --- what the machine can do ------------------------------------------------------------------


def step_matmuls(generator, discriminator, batch_size: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product one train_step computes with Dense-layer networks.

    For a layer with an (in, out) kernel: forward (B, in) x (in, out); weight gradient
    (in, B) x (B, out); input gradient (B, out) x (out, in). G runs forward once and backward
    once (no input gradient for its first layer: the noise is not trained). D runs forward three
    times (real and fake in its own update, fake in G's); its own update needs weight gradients
    for real and fake and input gradients below the top layer only; G's update needs input
    gradients through every D layer and no D weight gradients.
    """
    products = []
    for index, (inp, out) in enumerate(_dense_kernels(generator)):
        products += [(batch_size, inp, out), (inp, batch_size, out)]
        products += [(batch_size, out, inp)] if index else []
    for index, (inp, out) in enumerate(_dense_kernels(discriminator)):
        products += [(batch_size, inp, out)] * 3 + [(inp, batch_size, out)] * 2
        products += [(batch_size, out, inp)] * (3 if index else 1)
    return products


def _dense_kernels(model) -> list[tuple[int, int]]:
    return [
        tuple(layer.kernel.shape) for layer in model.layers if isinstance(layer, keras.layers.Dense)
    ]


def flops(products) -> int:
    return sum(2 * m * k * n for m, k, n in products)


def matmul_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of an (m, k) x (k, n) fp32 matrix product, repeated in-graph for ~seconds."""
    a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
    repeats = max(3, int(seconds * 3e11 / (2 * m * k * n)))

    @tf.function
    def repeated(a, b):
        total = tf.zeros((), tf.float32)
        for _ in tf.range(repeats):
            # Summing one element keeps every product alive without an (m, n) addition.
            total += tf.matmul(a, b)[0, 0]
        return total

    repeated(a, b).numpy()
    started = time.perf_counter()
    repeated(a, b).numpy()
    return 2 * m * k * n * repeats / (time.perf_counter() - started) / 1e9


def layer_shape_gflops(products) -> float:
    """GFLOP/s the given matrix products reach at their own shapes, timed one shape at a
    time: the best a step made only of these products could do."""
    seconds = sum(
        flops([shape]) * count / (matmul_gflops(*shape, seconds=0.2) * 1e9)
        for shape, count in Counter(products).items()
    )
    return flops(products) / seconds / 1e9


# Kinds of TensorFlow op in a profile: a kind's keys are substrings of the op types it covers.
OP_KINDS = {
    "matrix products": ("MatMul",),  # MatMul, _MklMatMul, _MklNativeFusedMatMul (+bias, relu)
    "Adam updates": ("ApplyAdam",),
    "random numbers": ("StatelessRandom",),  # the noise z and the dropout masks
}


def profile_breakdown(variant: _Ours, calls: int = 4) -> dict:
    """Where the time of a step goes, by the TensorFlow profiler: milliseconds per step spent
    in each kind of op (summed over the compute threads), TensorFlow ops run per step, and the
    wall time per step while profiling."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    steps = variant.per_call * calls
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        rate = variant(steps)
        tf.profiler.experimental.stop()
        (trace,) = Path(logdir).glob("plugins/profile/*/*.xplane.pb")
        space = xplane_pb2.XSpace.FromString(trace.read_bytes())
    milliseconds, ops = Counter(), 0
    for plane in space.planes:
        names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the threads that run the step's ops
                continue
            for event in line.events:
                name = names[event.metadata_id]
                if ":" not in name or "::" in name:  # ops are "node:Type"; "A::B" are frames
                    continue
                op_type = name.rsplit(":", 1)[1]
                kind = next(
                    (k for k, keys in OP_KINDS.items() if any(key in op_type for key in keys)),
                    "other ops",
                )
                milliseconds[kind] += event.duration_ps / 1e9
                ops += 1
    return {
        "steps": steps,
        "wall_ms_per_step": 1000 / rate,
        "ops_per_step": ops / steps,
        "op_ms_per_step": {kind: ms / steps for kind, ms in milliseconds.most_common()},
    }


def measure_training_run(path: str) -> dict:
    """Peak resident memory and times of `python -m gan.train --epochs 1` on `path`.

    The peak is the child's VmHWM, polled from /proc while it runs: getrusage's
    RUSAGE_CHILDREN would also count this (large) process, whose pages a forked child shares
    until it execs."""
    with tempfile.TemporaryDirectory() as logdir:
        command = [sys.executable, "-m", "gan.train", "--epochs", "1", "--data", path]
        command += ["--logdir", logdir, "--run", "memory"]
        started = time.perf_counter()
        with tempfile.TemporaryFile() as stderr:
            child = subprocess.Popen(
                command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=stderr
            )
            peak_kb = 0
            while child.poll() is None:
                peak_kb = max(peak_kb, _peak_rss_kb(child.pid))
                time.sleep(0.05)
            wall = time.perf_counter() - started
            if child.returncode != 0:
                stderr.seek(0)
                return {"error": stderr.read().decode().strip().splitlines()[-1:]}
        history = Path(logdir, "memory", "history.csv").read_text().splitlines()
        epoch_seconds = float(history[1].split(",")[-1])
    return {
        "command": "python " + " ".join(command[1:]),
        "peak_rss_mb": peak_kb / 1024,
        "wall_seconds": wall,
        "epoch_seconds": epoch_seconds,
    }


def _peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set) of a process in kB; 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else 0


def _machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average_at_end": os.getloadavg(),
    }


def markdown(results: dict) -> str:
    flops, ceiling = results["flops_per_step"], results["matmul_ceiling_gflops"]
    textbook = results["variants"]["textbook"]["steps_per_second"]
    lines = [
        f"`{results['command']}`",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"TensorFlow {results['machine']['tensorflow']}, Keras {results['machine']['keras']}",
        f"One step: {flops / 1e9:.3f} GFLOP (matrix products, batch "
        f"{results['data']['batch_size']}). Ceiling: {ceiling:.0f} GFLOP/s (4096x4096 fp32 "
        f"matmul); at the step's own layer shapes: {results['layer_shape_ceiling_gflops']:.0f} "
        f"GFLOP/s.",
        "",
        "| variant | steps/s | vs textbook | GFLOP/s | % of matmul ceiling |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, v in results["variants"].items():
        lines.append(
            f"| {name} | {v['steps_per_second']:.1f} | {v['steps_per_second'] / textbook:.1f}x "
            f"| {v['gflops']:.0f} | {100 * v['gflops'] / ceiling:.0f} % |"
        )
    trains = results["textbook_discriminator_trains"]
    lines += [
        "",
        "Textbook loop's discriminator weights changed during its steps: "
        f"{'yes' if trains else 'no'}.",
        f"Default, projected for 100 epochs of 60,000 images (100 x 468 = 46,800 steps): "
        f"{results['projected_minutes_100_epochs_60k']:.1f} min.",
    ]
    profile = results["profile"]
    op_ms = sum(profile["op_ms_per_step"].values())
    shares = ", ".join(
        f"{kind} {100 * ms / op_ms:.0f} %" for kind, ms in profile["op_ms_per_step"].items()
    )
    lines.append(
        f"Profile of {profile['steps']} default steps (TensorFlow profiler): "
        f"{profile['ops_per_step']:.0f} ops per step taking {op_ms:.2f} ms of thread time "
        f"({shares}); {profile['wall_ms_per_step']:.2f} ms wall time per step while profiled."
    )
    run = results.get("training_run")
    if run and "error" not in run:
        lines.append(
            f"`{run['command']}`: one 60,000-image epoch in {run['epoch_seconds']:.1f} s, "
            f"peak resident memory {run['peak_rss_mb']:.0f} MB."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
