"""Training runs under tf.distribute, each in a fresh process started by tests/test_distribute.py.

    python tests/distributed_runs.py mirrored OUT_DIR     # the CPU split into 2 devices
    python tests/distributed_runs.py worker OUT_DIR ARGS  # one worker of a TF_CONFIG cluster

Splitting the CPU into logical devices and creating a MultiWorkerMirroredStrategy both have to
happen before TensorFlow initialises its runtime (importing it does not), which the pytest
process has long done. Each mode writes its results (variables, histories) to
OUT_DIR/results.npz for the tests to check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import gan.train
from gan import data, distribute
from gan.config import Config
from gan.gan import GAN, build_gan

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest, run as a script
from conftest import make_images  # noqa: E402

IMAGES, BATCH, EPOCHS, NOISE_DIM = 64, 16, 2, 8  # 4 steps an epoch, 8 images per replica
CLASSES = 10  # --conditional runs: image i is labelled i mod 10
# The two-worker test's cases: name -> options besides --strategy
TWO_WORKER_CASES = {
    "float32": {},
    "float16": {"mixed_precision": "float16"},
    "conditional": {"conditional": True},
}
METRICS = ("d_loss", "g_loss", "d_real", "d_fake")


def config(**changes) -> Config:
    return Config(epochs=EPOCHS, batch_size=BATCH, noise_dim=NOISE_DIM, **changes)


def _all_variables(model) -> list:
    """The networks' and optimizers' variables (weights, noise and dropout seeds, Adam's
    moments and step counts), in an order that is the same for every GAN built alike."""
    return model.variables + model.d_optimizer.variables + model.g_optimizer.variables


def variables(model) -> dict:
    """Every variable by position ("v00", ...; paths differ between models of one process);
    under several replicas, the first replica's copy (see `replicas_agree`)."""
    return {f"v{i:02d}": v.numpy() for i, v in enumerate(_all_variables(model))}


def replicas_agree(model) -> bool:
    """Whether every variable has the same value on all of this process' replicas."""
    strategy = model.distribute_strategy
    for variable in _all_variables(model):
        copies = [c.numpy() for c in strategy.experimental_local_results(variable.value)]
        if any(not np.array_equal(copies[0], c) for c in copies[1:]):
            return False
    return True


def history(model) -> dict:
    return {f"history:{name}": np.array(model.history.history[name]) for name in METRICS}


class FirstStep(keras.callbacks.Callback):
    """Keeps the variables and logs after the first training step (of one step per call)."""

    def on_train_batch_end(self, batch, logs=None):
        if not hasattr(self, "variables"):
            self.variables = variables(self.model)
            self.logs = {f"first:{k}": float(v) for k, v in logs.items()}
            self.logs["first:d_steps"] = self.model.d_optimizer.iterations.numpy()


def build(strategy, **changes):
    """A fresh GAN (seed 0) built under `strategy`."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        return build_gan(config(**changes).resolved(IMAGES, False, CLASSES))


def fit_without_dropout(strategy, steps_per_call, **changes):
    """A GAN built under `strategy`, dropout off (a distributed run draws other dropout masks
    than one device), trained EPOCHS epochs like gan.train.train. Returns (model, first step)."""
    images = make_images(IMAGES)
    labels = np.arange(IMAGES) % CLASSES if changes.get("conditional") else None
    model = build(strategy, steps_per_call=steps_per_call, **changes)
    for layer in model.discriminator.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    first = FirstStep()
    model.fit(
        data.make_dataset(images, BATCH, seed=0, epochs=EPOCHS, labels=labels),
        epochs=EPOCHS,
        steps_per_epoch=IMAGES // BATCH,
        shuffle=False,
        verbose=0,
        callbacks=[first],
    )
    return model, first


def checkpoint_round_trip(source, target, directory: Path) -> dict:
    """Saves source's networks, optimizers and noise seed with tf.train.Checkpoint, restores
    them into target (built under another strategy), and returns target's variables."""

    def checkpoint(model):
        return tf.train.Checkpoint(
            generator=model.generator,
            discriminator=model.discriminator,
            d_optimizer=model.d_optimizer,
            g_optimizer=model.g_optimizer,
            noise_seed=model.noise_seed.state,  # a SeedGenerator is not trackable; its state is
        )

    path = checkpoint(source).write(str(directory / "checkpoint"))
    checkpoint(target).read(path).assert_consumed()
    return variables(target)


def batch_norm_statistics(strategy) -> dict:
    """mlp-bn's generator (seed 0) after one training-mode call on one global batch of noise,
    split over the replicas: the images and every BatchNorm moving statistic (the first
    replica's copy), and whether the replicas' copies agree."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        generator = build_gan(config(arch="mlp-bn").resolved(IMAGES, has_gpu=False)).generator
    noise = np.random.default_rng(0).standard_normal((BATCH, NOISE_DIM)).astype(np.float32)
    batch = next(
        iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(noise)))
    )
    images = strategy.run(tf.function(lambda z: generator(z, training=True)), args=(batch,))
    statistics = generator.non_trainable_weights
    copies = [strategy.experimental_local_results(w.value) for w in statistics]
    return {
        "images": np.concatenate([i.numpy() for i in strategy.experimental_local_results(images)]),
        **{f"s{i}": w.numpy() for i, w in enumerate(statistics)},
        "statistics_agree": all(np.array_equal(c[0], d) for c in copies for d in c[1:]),
    }


def dropout_masks(strategy) -> np.ndarray:
    """Which units the textbook discriminator's dropout layer keeps in one training-mode call
    on ones, 8 rows on each replica: bool (replicas, 8, 256)."""
    discriminator = build(strategy).discriminator
    dropout = next(
        layer for layer in discriminator.layers if isinstance(layer, keras.layers.Dropout)
    )
    kept = strategy.run(tf.function(lambda: dropout(tf.ones((8, 256)), training=True) != 0))
    return np.stack([k.numpy() for k in strategy.experimental_local_results(kept)])


def augmented(strategy) -> np.ndarray:
    """The images of one --augment translation,cutout call (GAN._augment) on the same 8 images
    on each replica: float (replicas, 8, 28, 28, 1)."""
    model = build(strategy, augment="translation,cutout")
    images = tf.constant(data.to_float(make_images(8)))
    result = strategy.run(tf.function(lambda: model._augment(images)))
    return np.stack([r.numpy() for r in strategy.experimental_local_results(result)])


def overflow_on_one_replica(strategy) -> dict:
    """One loss-scaled update (GAN._apply, LossScaleOptimizer over SGD) of w = 1 with loss
    w^2, in which only the second replica's loss overflows. Returns each replica's w, the
    loss scale and the step count afterwards."""
    with strategy.scope():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
        model.layers[0].kernel.assign([[1.0]])
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
        optimizer.build(model.trainable_variables)

    def step():
        second = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(tf.ones((1, 1)))) ** 2 * (1 + second * 1e38)
        GAN._apply(tape, loss, model, optimizer)

    tf.function(lambda: strategy.run(step))()
    kernel = model.layers[0].kernel.value
    return {
        "w": np.array([w.numpy().item() for w in strategy.experimental_local_results(kernel)]),
        "scale": optimizer.dynamic_scale.numpy(),
        "steps": optimizer.iterations.numpy(),
    }


def mirrored(out: Path) -> dict:
    """Single device vs MirroredStrategy over the CPU split in two; checkpoints between them;
    a float16 overflow on one replica; gan.train.train under MirroredStrategy."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    mirrored = distribute.make_strategy("mirrored")  # picks up the two logical CPUs
    single = tf.distribute.get_strategy()
    results = {"replicas": mirrored.num_replicas_in_sync}
    runs = {
        "single": fit_without_dropout(single, steps_per_call=1),
        "mirrored": fit_without_dropout(mirrored, steps_per_call=1),
        "mirrored_k": fit_without_dropout(mirrored, steps_per_call=IMAGES // BATCH),
        "mirrored_float16": fit_without_dropout(
            mirrored, steps_per_call=2, mixed_precision="float16"
        ),
        # --ema over mlp-bn: the average of weights and of synchronized BatchNorm statistics
        "single_ema": fit_without_dropout(single, steps_per_call=1, arch="mlp-bn", ema=0.9),
        "mirrored_ema": fit_without_dropout(mirrored, steps_per_call=2, arch="mlp-bn", ema=0.9),
        # --conditional: each replica's share of the fake labels, the labels of its images
        "single_conditional": fit_without_dropout(
            single, steps_per_call=1, arch="mlp-bn", conditional=True
        ),
        "mirrored_conditional": fit_without_dropout(
            mirrored, steps_per_call=2, arch="mlp-bn", conditional=True
        ),
        "mirrored_conditional_float16": fit_without_dropout(
            mirrored, steps_per_call=2, conditional=True, mixed_precision="float16"
        ),
    }
    for name, (model, first) in runs.items():
        results.update({f"{name}/{k}": v for k, v in variables(model).items()})
        results.update({f"{name}/first/{k}": v for k, v in first.variables.items()})
        results.update({f"{name}/{k}": v for k, v in first.logs.items()})
        results.update({f"{name}/{k}": v for k, v in history(model).items()})
        results[f"{name}/steps_per_execution"] = model.steps_per_execution
        results[f"{name}/d_steps"] = model.d_optimizer.iterations.numpy()
        results[f"{name}/replicas_agree"] = replicas_agree(model)

    # Checkpoints: distributed -> single device, and single device -> distributed.
    single_model, mirrored_model = runs["single"][0], runs["mirrored"][0]
    restored = checkpoint_round_trip(mirrored_model, build(single), out / "from_mirrored")
    results.update({f"mirrored_to_single/{k}": v for k, v in restored.items()})
    fresh_mirrored = build(mirrored)
    restored = checkpoint_round_trip(single_model, fresh_mirrored, out / "from_single")
    results.update({f"single_to_mirrored/{k}": v for k, v in restored.items()})
    results["single_to_mirrored/replicas_agree"] = replicas_agree(fresh_mirrored)

    for name, strategy in (("single", single), ("mirrored", mirrored)):
        statistics = batch_norm_statistics(strategy)
        results.update({f"{name}_bn/{k}": v for k, v in statistics.items()})

    results["dropout_masks"] = dropout_masks(mirrored)
    results["augmented"] = augmented(mirrored)

    overflow = overflow_on_one_replica(mirrored)
    results.update({f"overflow/{k}": v for k, v in overflow.items()})

    # The training function of the CLI, dropout on, for the two-worker test to compare with
    # (conditional: on images labelled i mod CLASSES).
    for case in TWO_WORKER_CASES:
        changes = {"strategy": "mirrored", **TWO_WORKER_CASES[case]}
        labels = np.arange(IMAGES) % CLASSES if changes.get("conditional") else None
        model = gan.train.train(
            config(**changes), out / f"run-{case}", make_images(IMAGES), labels=labels
        )
        results.update({f"train-{case}/{k}": v for k, v in variables(model).items()})
        results.update({f"train-{case}/{k}": v for k, v in history(model).items()})
    return results


def worker(out: Path, argv: list[str]) -> dict:
    """One worker of a multiworker run through the command line (`gan.train.main`); the
    model it trains is kept for the test by wrapping gan.train.Training.run."""
    trained = []
    original_run = gan.train.Training.run

    def keep_model(training):
        trained.append(original_run(training))
        return trained[-1]

    gan.train.Training.run = keep_model
    status = gan.train.main(argv)
    results = {"status": status}
    if trained:
        results.update(variables(trained[0]))
        results.update(history(trained[0]))
        results["replicas_agree"] = replicas_agree(trained[0])
    return results


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    results = mirrored(out) if mode == "mirrored" else worker(out, sys.argv[3:])
    np.savez(out / "results.npz", **results)
