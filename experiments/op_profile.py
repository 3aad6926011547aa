"""Where the time of our compiled step goes, by the TensorFlow profiler: milliseconds per step
in each kind of op."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

# Kinds of TensorFlow op in a profile: a kind's keys are substrings of the op types it covers.
OP_KINDS = {
    "matrix products": ("MatMul",),  # MatMul, _MklMatMul, _MklNativeFusedMatMul (+bias, relu)
    "Adam updates": ("ApplyAdam",),
    "random numbers": ("StatelessRandom",),  # the noise z and the dropout masks
}


def profile_breakdown(variant, calls: int = 4) -> dict:
    """Profiles `calls` compiled calls of `variant` (an experiments.timing.CompiledStep).
    Returns the milliseconds per step spent in each kind of op (summed over the compute
    threads), the TensorFlow ops run per step, and the wall time per step while profiling."""
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
