"""Scaling out: the tf.distribute strategy behind `--strategy`, and where each worker writes.

The training code is the same under every strategy. `train()` builds the GAN inside
`strategy.scope()`; Keras' fit distributes the dataset, splitting each global batch of
--batch-size images evenly over the replicas, and runs `GAN.train_step` on every replica. Why
a step on N replicas equals a step on one device on the same global batch is explained in
gan/gan.py (`GAN.train_step`).

TensorFlow is imported by the functions that need it, so that `--help` stays instant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gan.errors import UsageError


def make_strategy(name: str, join_timeout: float | None = None, prog: str | None = None):
    """The tf.distribute.Strategy a --strategy value names.

    default: TensorFlow's default strategy: one device, and the step runs exactly as without
        tf.distribute. mirrored: MirroredStrategy over every GPU of this machine, else over
        its CPU devices (one, unless the process split the CPU into logical devices).
    multiworker: MultiWorkerMirroredStrategy over the cluster the TF_CONFIG environment
        variable describes (this machine alone without it). It must be created before
        TensorFlow runs anything else in the process. Creating it waits until every worker
        has joined; join_timeout: if that takes longer than this many seconds, the process
        is stopped with one line on stderr, starting with `prog`, the command's name (None:
        it waits for ever).
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name != "multiworker" or join_timeout is None:
        return _replicating_strategy(name)
    if prog is None:
        raise ValueError("a join_timeout needs the command's name (prog) for its error line")
    message = (
        f"{prog}: error: the cluster of TF_CONFIG did not form within "
        f"{join_timeout:g} s: a worker is missing (not started, or stopped before joining: see "
        "its output); start the missing worker, or stop every worker and start them again "
        "(--join-timeout sets the wait)"
    )
    with _killed_after(join_timeout, message):
        return _replicating_strategy(name)


# A watchdog process: while TensorFlow waits for the cluster it holds the GIL, retries for ever
# and handles SIGTERM itself, so no thread or signal handler of the waiting process can stop it.
_WATCHDOG = """
import os, sys, time
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(seconds)
if os.getppid() == parent:  # else the parent has ended, and its pid may be another's now
    sys.stderr.write(message + "\\n")
    sys.stderr.flush()
    os.kill(parent, 9)
"""


@contextlib.contextmanager
def _killed_after(seconds: float, message: str) -> Iterator[None]:
    """Unless the block ends within `seconds`, `message` goes to stderr and this process is
    killed (SIGKILL: exit status 137 in a shell): nothing has been written by then."""
    try:
        stderr = sys.stderr.fileno()  # the terminal's, also while TensorFlow's is held back
    except (AttributeError, OSError, ValueError):
        stderr = None
    watchdog = subprocess.Popen(
        [sys.executable, "-S", "-c", _WATCHDOG, str(os.getpid()), str(seconds), message],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


@functools.cache
def _replicating_strategy(name: str):
    """One strategy of each kind per process, so that train() can run twice in a process:
    a second MirroredStrategy reuses the first one's collective-op keys for tensors of other
    shapes and the training fails ("Shape mismatch in the collective instance")."""
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def check_batch_split(batch_size: int, replicas: int) -> None:
    """Raises UsageError unless every replica gets the same number of images: Keras losses
    average over each replica's own batch, so only equal shares add up to the global mean."""
    if batch_size % replicas:
        raise UsageError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )


def is_chief(strategy: str, environ=os.environ) -> bool:
    """Whether this process writes the run directory. Every process does except the non-chief
    workers of a multiworker run: by TensorFlow's convention the chief is the task of type
    "chief" in TF_CONFIG, or worker 0 when the cluster has no "chief" task."""
    if strategy != "multiworker" or not environ.get("TF_CONFIG"):
        return True
    try:
        tf_config = json.loads(environ["TF_CONFIG"])
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError) as error:
        raise UsageError(
            f"TF_CONFIG must be JSON with 'cluster' and 'task' {{'type', 'index'}} "
            f"({type(error).__name__}: {error}); see docs/distributed.md"
        ) from None
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and index == 0


@contextlib.contextmanager
def output_dir(run_dir: Path, chief: bool):
    """Yields the directory this process writes its run to: run_dir for the chief; for any
    other worker a scratch directory, deleted afterwards. So every worker runs train()
    unchanged, callbacks included, and only the chief's files are kept: the pattern of
    tf.keras' ModelCheckpoint under MultiWorkerMirroredStrategy (distributed_file_utils)."""
    if chief:
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix="gan-worker-") as scratch:
        yield Path(scratch) / Path(run_dir).name


def chief_value(strategy, value: int) -> int:
    """The chief's `value` (an int below 2**24), on every worker of a multiworker run; the
    other workers' `value` is ignored. A collective operation: every worker must call it at
    the same point, and it waits until all have. The chief holds replica 0 (TensorFlow
    numbers the chief's replicas first), the only one whose value enters the sum."""
    import tensorflow as tf

    def contribution():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return context.all_reduce("SUM", tf.where(first, float(value), 0.0))

    return int(_local_result(strategy, contribution))


def any_worker(strategy, failed: bool) -> bool:
    """Whether any worker of a multiworker run passed failed=True. A collective operation, as
    `chief_value`."""
    import tensorflow as tf

    def contribution():
        return tf.distribute.get_replica_context().all_reduce("SUM", float(failed))

    return _local_result(strategy, contribution) > 0


def lost_worker(error: BaseException) -> bool:
    """Whether `error` is how TensorFlow reports, in a multiworker run, that another worker
    stopped or cannot be reached: an UnavailableError, which aborts the collective operations
    of every worker still running once the lost one misses its heartbeats (seconds after a
    SIGKILL) or refuses connections."""
    tf = sys.modules.get("tensorflow")  # not loaded: not TensorFlow's error
    return tf is not None and isinstance(error, tf.errors.UnavailableError)


def _local_result(strategy, replica_fn) -> float:
    """`replica_fn`'s (all-reduced) float32 result on this worker's first replica."""
    import tensorflow as tf

    result = tf.function(lambda: strategy.run(replica_fn))()
    return float(strategy.experimental_local_results(result)[0])


def replicated_train_function(model):
    """The train function Keras' fit calls, for a model under a strategy with several
    replicas: `model.steps_per_execution` steps per call, logs averaged over all replicas.

    It replaces Keras' own function, which fails there in two ways (TF 2.21, Keras 3.15.1):
    - MultiWorkerMirroredStrategy: Keras averages each log with strategy.reduce(..., axis=0),
      which rejects scalars ("Invalid reduction dimension 0 for input with 0 dimensions",
      reported as tensorflow/tensorflow#72388). Here the replicas average their logs with an
      all-reduce.
    - Several steps per call under MirroredStrategy with several devices (reproduced with a
      plain Sequential model too): Keras guards each step with a tf.cond, in case the data
      runs out, and a tf.function holding strategy.run, whose replicas synchronise through
      merge_call outside XLA, fails when called inside a tf.cond ("You must feed a value for
      placeholder tensor", the error of keras-team/keras#19246). Here the steps run in a loop
      without the guard, which is safe because a run's steps_per_call divides its steps per
      epoch (Config.resolved), so no call reaches past the data.
    """
    import tensorflow as tf

    strategy = model.distribute_strategy

    def replica_step(batch):
        logs = model.train_step(batch)
        # Each replica's metrics cover its own equal share of every batch, so their mean
        # over the replicas (of all workers) is the metric of the global batches.
        return tf.distribute.get_replica_context().all_reduce("MEAN", logs)

    @tf.function(jit_compile=model.jit_compile, reduce_retracing=True)
    def one_step(batch):
        logs = strategy.run(replica_step, args=(batch,))
        return {name: strategy.experimental_local_results(v)[0] for name, v in logs.items()}

    @tf.function
    def train_function(iterator):
        logs = one_step(next(iterator))
        for _ in tf.range(model.steps_per_execution - 1):
            logs = one_step(next(iterator))
        return logs

    return train_function


def skip_together(gradients: list) -> list:
    """This replica's gradients, made non-finite if any replica's are (a float16 overflow), so
    that a LossScaleOptimizer skips the step on every replica or on none.

    Keras' LossScaleOptimizer (3.15.1) checks the gradients of the first replica only, before
    they are summed: if only another replica overflows, its inf is summed into the update of
    every replica and the loss scale is not lowered (reproduced on two CPU devices). Under
    MultiWorkerMirroredStrategy each worker decides from its own gradients, so workers could
    disagree, one skipping the gradient all-reduce that the other waits in (not reproduced).
    Costs one scalar all-reduce per update. Call this in replica context.
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
        return gradients
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    overflows = context.all_reduce("SUM", tf.cast(tf.logical_not(finite), tf.float32))
    poison = tf.where(overflows > 0, float("nan"), 0.0)
    return [g + tf.cast(poison, g.dtype) for g in gradients]
