"""Training speed of the textbook loop, our compiled step, its peers in JAX and PyTorch, and
`python -m gan.train` end to end, against this CPU's limit.

    python -m experiments.benchmark --steps 300 --json experiments/results/benchmark.json

Step-only rows, measured in this process on the same images and the same networks:

  textbook        the chapter's loop: generator.predict + discriminator.train_on_batch (real,
                  fake) + gan.train_on_batch per step, discriminator.trainable = False trick
  step            our GAN.train_step through fit(), one step per call, no XLA
  step+xla        the same with XLA (jit_compile=True)
  step×K          several steps per compiled call (steps_per_execution), no XLA
  step×K+xla      the same with XLA
  default         what `python -m gan.train` does with default options on this machine
  default, Keras Adam   the same with keras.optimizers.Adam instead of our fused-kernel Adam
  JAX step×K      the same step in JAX (jax.jit, lax.scan over K steps; if jax and optax are
                  installed: pip install -e '.[bench]')
  PyTorch eager   the same step in eager PyTorch (if torch is installed)

All of ours but "Keras Adam" use gan.optimizers.FusedAdam, as `python -m gan.train` does; the
peers are experiments/peers.py. End-to-end rows run `python -m gan.train` as a user does, in a
fresh process with a temporary --logdir, on the 10,000 images of --data and on the 60,000 of
--large-data, for N and 2N epochs: steps/s from the difference, and the fixed cost (start-up
and end) that cancels in it; a start-up probe (experiments/startup.py) splits the start-up
into phases (experiments/end_to_end.py).

Variants are timed in interleaved rounds (round 1: every variant, round 2: every variant, ...)
and each reports its best round (end to end: the shortest time of each command), so a burst of
load from another process disturbs one round of every variant instead of all rounds of one.
FLOPs per step are counted from the layer shapes (matrix products only); the ceiling is a large
fp32 matrix product timed in the same run, and the "layer-shape" ceiling is the same product at
the shapes of one training step.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiments.timing import (
    DEFAULT_DATA,
    FRAMEWORKS,
    LARGE_DATA,
    CompiledStep,
    from_project_root,
    machine,
    time_in_rounds,
)
from gan import data
from gan.config import Config, steps_per_epoch
from gan.tables import markdown_table

TEXTBOOK_EPOCHS, TEXTBOOK_IMAGES = 100, 60_000  # the chapter: 100 epochs of MNIST's training set


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=300, help="steps timed per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--steps-per-call", type=int, default=78, help="K of the step×K variants")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="images to train on")
    parser.add_argument(
        "--epochs", type=int, default=20, help="N of the end-to-end runs on --data (N and 2N)"
    )
    parser.add_argument(
        "--large-data",
        default=str(LARGE_DATA),
        help="a 60,000-image set for end-to-end runs and peak memory ('' to skip)",
    )
    parser.add_argument(
        "--large-epochs", type=int, default=3, help="N of the end-to-end runs on --large-data"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    # TensorFlow is imported only now, so that --help answers without loading it.
    from experiments import flops, op_profile, peers
    from experiments.end_to_end import EndToEnd

    images = data.load_path(args.data)
    batch = Config().batch_size
    variants = _variants(images, args.steps_per_call)
    # Profiled first: later in the process the profiler recorded only part of the ops.
    profile = op_profile.profile_breakdown(variants["default"])
    peer_variants, skipped = peers.available(images, args.steps_per_call)
    for note in skipped:
        print(note, file=sys.stderr)
    runs = [EndToEnd(args.data, args.epochs)]
    runs += [EndToEnd(args.large_data, args.large_epochs)] if args.large_data else []
    end_to_end = {f"gan.train end to end, {run.images:,} images": run for run in runs}
    timings = time_in_rounds({**variants, **peer_variants, **end_to_end}, args.steps, args.rounds)

    default = variants["default"].model
    products = flops.step_matmuls(
        flops.dense_kernels(default.generator), flops.dense_kernels(default.discriminator), batch
    )
    step = flops.flops(products)
    ceiling = max(flops.matmul_gflops(4096, 4096, 4096) for _ in range(args.rounds))
    shape_ceiling = max(flops.layer_shape_gflops(products) for _ in range(args.rounds))
    summaries = {name: run.summary() for name, run in end_to_end.items()}
    best = {
        name: summaries[name]["steps_per_second"] if name in summaries else max(rates)
        for name, rates in timings.items()
    }
    results = {
        "command": shlex.join(["python", "-m", "experiments.benchmark", *sys.argv[1:]]),
        "machine": machine(),
        "data": {"path": from_project_root(args.data), "images": len(images), "batch_size": batch},
        "default_config": _default_config(len(images)).to_json(),
        "flops_per_step": step,
        "matmul_ceiling_gflops": ceiling,
        "layer_shape_ceiling_gflops": shape_ceiling,
        "profile": profile,
        "textbook_discriminator_trains": variants["textbook"].discriminator_trained,
        "variants": {
            name: {
                "steps_per_second": best[name],
                "rounds": rates,
                "gflops": best[name] * step / 1e9,
            }
            for name, rates in timings.items()
        },
        "end_to_end": summaries,
        "skipped": skipped,
        "projected_minutes_100_epochs_60k": _projected_seconds(best["default"], batch) / 60,
    }
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _default_config(image_count: int) -> Config:
    import tensorflow as tf

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    return Config().resolved(image_count, has_gpu=has_gpu)


def _variants(images, per_call: int) -> dict:
    """Our step-only variants and the textbook loop, on images uint8 (N, 28, 28)."""
    import keras

    from experiments.textbook import Textbook

    base = Config().resolved(len(images), has_gpu=False)
    default = _default_config(len(images))
    return {
        "textbook": Textbook(data.to_float(images), base.batch_size),
        "step": CompiledStep(images, base.replace(jit=False, steps_per_call=1)),
        "step+xla": CompiledStep(images, base.replace(jit=True, steps_per_call=1)),
        f"step×{per_call}": CompiledStep(images, base.replace(jit=False, steps_per_call=per_call)),
        f"step×{per_call}+xla": CompiledStep(
            images, base.replace(jit=True, steps_per_call=per_call)
        ),
        "default": CompiledStep(images, default),
        "default, Keras Adam": CompiledStep(images, default, adam=keras.optimizers.Adam),
    }


def _projected_seconds(steps_per_second: float, batch_size: int, fixed: float = 0.0) -> float:
    """Seconds of the chapter's run (100 epochs of 60,000 images) at this speed, plus `fixed`."""
    steps = TEXTBOOK_EPOCHS * steps_per_epoch(TEXTBOOK_IMAGES, batch_size)
    return fixed + steps / steps_per_second


def markdown(results: dict) -> str:
    flops, ceiling = results["flops_per_step"], results["matmul_ceiling_gflops"]
    rates = {name: v["steps_per_second"] for name, v in results["variants"].items()}
    textbook, default = rates["textbook"], rates["default"]
    batch = results["data"]["batch_size"]
    lines = [
        f"`{results['command']}`",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        + ", ".join(
            f"{name} {version}"
            for name, version in results["machine"].items()
            if name in ("python", *FRAMEWORKS)
        ),
        f"One step: {flops / 1e9:.3f} GFLOP (matrix products, batch {batch}). Ceiling: "
        f"{ceiling:.0f} GFLOP/s (4096x4096 fp32 matmul); at the step's own layer shapes: "
        f"{results['layer_shape_ceiling_gflops']:.0f} GFLOP/s.",
        "",
        markdown_table(
            ["variant", "steps/s", "vs textbook", "vs default", "GFLOP/s", "% of matmul ceiling"],
            [
                [
                    name,
                    f"{rates[name]:.1f}",
                    f"{rates[name] / textbook:.1f}x",
                    f"{rates[name] / default:.2f}x",
                    f"{v['gflops']:.0f}",
                    f"{100 * v['gflops'] / ceiling:.0f} %",
                ]
                for name, v in results["variants"].items()
            ],
            numbers_from=1,
        ),
    ]
    trains = results["textbook_discriminator_trains"]
    lines += [
        "",
        *(f"Skipped: {note}." for note in results["skipped"]),
        "Textbook loop's discriminator weights changed during its steps: "
        f"{'yes' if trains else 'no'}.",
        f"Default, projected for 100 epochs of 60,000 images (100 x 468 = 46,800 steps): "
        f"{results['projected_minutes_100_epochs_60k']:.1f} min of steps.",
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
    if results["end_to_end"]:
        lines += ["", *_end_to_end_markdown(results["end_to_end"], textbook, default, batch)]
    return "\n".join(lines)


def _seconds_beyond_steps(run: dict, batch: int, default: float) -> float:
    """Seconds per epoch of an end-to-end run beyond its steps at the default step's speed."""
    return steps_per_epoch(run["images"], batch) * (1 / run["steps_per_second"] - 1 / default)


def _end_to_end_markdown(runs: dict, textbook: float, default: float, batch: int) -> list[str]:
    """The end-to-end section: one column per image set."""
    columns = list(runs.values())
    rows = {
        "epochs N, 2N": lambda r: ", ".join(map(str, r["epochs"])),
        "steps/s end to end": lambda r: f"{r['steps_per_second']:.1f}",
        "vs default step (step only)": lambda r: f"{r['steps_per_second'] / default:.2f}x",
        "vs textbook loop": lambda r: f"{r['steps_per_second'] / textbook:.1f}x",
        "seconds per epoch beyond the steps (callbacks)": lambda r: (
            f"{_seconds_beyond_steps(r, batch, default):.2f}"
        ),
        "fixed seconds: 2 wall(N) - wall(2N)": lambda r: f"{r['fixed_seconds']:.1f}",
        'seconds from launch to "Training on" (networks built)': lambda r: (
            f"{r['to_training_line_seconds']:.1f}"
        ),
        "first epoch's extra seconds (tracing, first sample grid)": lambda r: (
            f"{r['first_epoch_extra_seconds']:.1f}"
        ),
        "seconds from the last epoch to exit (grid, plot, saving)": lambda r: (
            f"{r['end_seconds']:.1f}"
        ),
        "projected minutes, 100 epochs of 60,000 images": lambda r: (
            f"{_projected_seconds(r['steps_per_second'], batch, r['fixed_seconds']) / 60:.1f}"
            if r["images"] == TEXTBOOK_IMAGES
            else "—"  # its callbacks run once per epoch: every epoch size has its own rate
        ),
        "peak resident memory, MB": lambda r: f"{r['peak_rss_mb']:.0f}",
    }
    phases = [
        [phase, *(f"{r['startup_seconds'][phase]:.2f}" for r in columns)]
        for phase in columns[0]["startup_seconds"]
    ]
    total = ["total", *(f"**{sum(r['startup_seconds'].values()):.2f}**" for r in columns)]
    return [
        "`python -m gan.train --data DATA --epochs N` end to end, in a fresh process (shortest "
        "time of each command over the rounds):",
        "",
        markdown_table(
            ["", *(f"{r['images']:,} images" for r in columns)],
            [[row, *map(cell, columns)] for row, cell in rows.items()],
            numbers_from=1,
        ),
        "",
        "Start-up to the first step, phase by phase (experiments/startup.py in a fresh process; "
        "shortest of the rounds):",
        "",
        markdown_table(
            ["phase", *(f"{r['images']:,} images, s" for r in columns)],
            [*phases, total],
            numbers_from=1,
        ),
    ]


if __name__ == "__main__":
    main()
