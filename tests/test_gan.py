"""The training step: each update touches only its own network (weights, BatchNorm moving
statistics), losses are the textbook's binary cross-entropy, and fit() trains every
architecture with XLA on and off; also for the class-conditional networks (--conditional)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan import data
from gan.config import ARCHITECTURES, Config
from gan.gan import GAN, build_gan
from gan.losses import Hinge, NonSaturating
from gan.models import BN_MOMENTUM, mlp_generator, with_labels

NOISE_DIM = 8
BATCH = 16
CLASSES = 10  # of the conditional GANs


def _gan(jit=False, steps_per_call=1, image_count=BATCH, arch="mlp", **options) -> GAN:
    """A freshly initialised GAN (seed 0) of `arch` with a small noise vector; `options`:
    other gan.config.Config options (conditional=True: CLASSES classes)."""
    keras.utils.set_random_seed(0)
    config = Config(
        arch=arch,
        noise_dim=NOISE_DIM,
        batch_size=BATCH,
        jit=jit,
        steps_per_call=steps_per_call,
        **options,
    )
    return build_gan(config.resolved(image_count, False, CLASSES), steps_per_epoch=1)


def _real(count=BATCH):
    return data.to_float(np.random.default_rng(1).integers(0, 256, (count, 28, 28), np.uint8))


def _noise(count=BATCH):
    return np.random.default_rng(2).standard_normal((count, NOISE_DIM)).astype(np.float32)


def _labels(model, seed=3, count=BATCH):
    """int32 (count,) classes for a conditional GAN's networks; None for an unconditional one."""
    if not model.num_classes:
        return None
    return np.random.default_rng(seed).integers(0, model.num_classes, count).astype(np.int32)


def _snapshot(model) -> dict:
    """Every variable of a model (trainable, non-trainable, RNG state) by path, as NumPy."""
    return {v.path: v.numpy() for v in model.variables}


def _assert_same_networks(a: GAN, b: GAN) -> None:
    """Every variable of a's generator and discriminator bitwise equal to b's, in order (the
    options' own variables, such as an EMA generator's, left out)."""
    for x, y in zip(
        a.generator.variables + a.discriminator.variables,
        b.generator.variables + b.discriminator.variables,
        strict=True,
    ):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


def _changed(before: dict, after: dict) -> set:
    return {path for path in before if not np.array_equal(before[path], after[path])}


def _dropout_rng_states(model) -> set:
    return {
        layer.seed_generator.state.path
        for layer in model.layers
        if isinstance(layer, keras.layers.Dropout)
    }


def _statistics(model) -> set:
    """Paths of the BatchNorm moving means and variances (non-trainable weights, no RNG state)."""
    return {w.path for w in model.non_trainable_weights}


# The isolation of the two updates, for every architecture and for the options that change
# what the networks hold (spectral norm: D's power-iteration vectors) or what D sees.
# The conditional networks (their label embeddings, the projection) are isolated alike.
CONDITIONAL = {"conditional": True}
ISOLATION_CASES = [
    *[pytest.param(arch, {}, id=arch) for arch in ARCHITECTURES],
    pytest.param("mlp", {"spectral_norm": True}, id="mlp-spectral-norm"),
    pytest.param("dcgan", {"spectral_norm": True, "r1": 1.0}, id="dcgan-spectral-norm-r1"),
    pytest.param("mlp-bn", {"augment": "translation,cutout", "ema": 0.9}, id="mlp-bn-augment-ema"),
    *[pytest.param(arch, CONDITIONAL, id=f"{arch}-conditional") for arch in ARCHITECTURES],
    pytest.param(
        "dcgan", {**CONDITIONAL, "spectral_norm": True, "r1": 1.0}, id="dcgan-conditional-sn-r1"
    ),
    pytest.param(
        "mlp-bn",
        {**CONDITIONAL, "augment": "translation,cutout", "ema": 0.9},
        id="mlp-bn-conditional-augment-ema",
    ),
    pytest.param("dcgan", {**CONDITIONAL, "conditional_bn": True}, id="dcgan-conditional-bn"),
]


@pytest.mark.parametrize("arch, options", ISOLATION_CASES)
def test_generator_update_leaves_every_discriminator_weight_bitwise_unchanged(arch, options):
    model = _gan(arch=arch, **options)
    assert model.num_classes == (CLASSES if options.get("conditional") else None)
    d_before, g_before = _snapshot(model.discriminator), _snapshot(model.generator)

    model.train_generator(_noise(), _labels(model))

    # The generator's step runs D in training mode (dropout on, as in the textbook), so the
    # only discriminator variable that may move is dropout's random-number counter; its
    # weights include any moving statistics.
    d_changed = _changed(d_before, _snapshot(model.discriminator))
    assert d_changed <= _dropout_rng_states(model.discriminator)
    assert {w.path for w in model.discriminator.weights}.isdisjoint(d_changed)
    # G ran in training mode: its weights and its own moving statistics (if any) moved.
    g_moved = {v.path for v in model.generator.trainable_variables} | _statistics(model.generator)
    assert _changed(g_before, _snapshot(model.generator)) == g_moved
    assert (arch == "mlp") == (not _statistics(model.generator))  # mlp-bn, dcgan: BatchNorm
    assert int(model.g_optimizer.iterations) == 1
    assert int(model.d_optimizer.iterations) == 0


@pytest.mark.parametrize("arch, options", ISOLATION_CASES)
def test_discriminator_update_leaves_every_generator_variable_bitwise_unchanged(arch, options):
    model = _gan(arch=arch, **options)
    fake_labels = _labels(model)
    fake = model.generator(with_labels(_noise(), fake_labels), training=True)
    d_before, g_before = _snapshot(model.discriminator), _snapshot(model.generator)

    model.train_discriminator(_real(), fake, _labels(model, seed=4), fake_labels)

    assert _changed(g_before, _snapshot(model.generator)) == set()
    d_trainable = {v.path for v in model.discriminator.trainable_variables}
    assert d_trainable <= _changed(d_before, _snapshot(model.discriminator))
    assert int(model.d_optimizer.iterations) == 1
    assert int(model.g_optimizer.iterations) == 0


def _gan_with(discriminator) -> GAN:
    """A compiled GAN of the textbook generator and `discriminator`."""
    keras.utils.set_random_seed(0)
    model = GAN(mlp_generator(NOISE_DIM), discriminator, noise_dim=NOISE_DIM, seed=0)
    model.compile(
        d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        loss_fn=NonSaturating(),
    )
    return model


def _constant_logit_gan(logit: float) -> GAN:
    """A discriminator whose logit is `logit` for every image until its first update."""
    discriminator = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(
                1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(logit)
            ),
        ]
    )
    return _gan_with(discriminator)


def _batch_norm_discriminator_gan() -> GAN:
    """A discriminator with BatchNorm (none of gan.models has one; a user's might), no dropout."""
    discriminator = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(momentum=BN_MOMENTUM),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Dense(1),
        ]
    )
    return _gan_with(discriminator)


def _bce_real(logits):
    """Binary cross-entropy of label 1 for a logit: -log(sigmoid(l)) = log(1 + e^-l)."""
    return np.mean(np.log1p(np.exp(-np.asarray(logits, np.float64))))


def _bce_fake(logits):
    """Binary cross-entropy of label 0 for a logit: -log(1 - sigmoid(l)) = log(1 + e^l)."""
    return np.mean(np.log1p(np.exp(np.asarray(logits, np.float64))))


@pytest.mark.parametrize("logit", [0.0, 1.5, -2.0])
def test_losses_equal_hand_computed_binary_cross_entropy(logit):
    model = _constant_logit_gan(logit)
    noise = _noise()
    fake = np.asarray(model.generator(noise, training=True))

    d_loss, _, _ = model.train_discriminator(_real(), fake)
    assert float(d_loss) == pytest.approx(0.5 * (_bce_real([logit]) + _bce_fake([logit])), 1e-6)
    if logit == 0.0:
        assert float(d_loss) == pytest.approx(np.log(2), 1e-6)

    # The generator's loss is computed with the discriminator as just updated.
    kernel, bias = (np.asarray(w, np.float64) for w in model.discriminator.weights)
    updated_logits = fake.reshape(BATCH, -1) @ kernel + bias
    g_loss = model.train_generator(noise)  # G unchanged so far: it recomputes the same fakes
    assert float(g_loss) == pytest.approx(_bce_real(updated_logits), 1e-5)


def test_step_metrics_are_mean_losses_and_probabilities():
    logit = 1.5
    metrics = _constant_logit_gan(logit).train_step(tf.constant(_real()))
    probability = 1 / (1 + np.exp(-logit))
    assert float(metrics["d_real"]) == pytest.approx(probability, 1e-6)
    assert float(metrics["d_fake"]) == pytest.approx(probability, 1e-6)
    assert float(metrics["d_loss"]) == pytest.approx(
        0.5 * (_bce_real([logit]) + _bce_fake([logit])), 1e-6
    )


def test_generator_update_runs_the_discriminator_in_training_mode_keeping_its_statistics():
    model = _batch_norm_discriminator_gan()
    noise = _noise()
    fake = model.generator(noise, training=True)  # the textbook G: no statistics, no dropout
    twin = keras.models.clone_model(model.discriminator)
    twin.set_weights(model.discriminator.get_weights())
    statistics_before = _snapshot(model.discriminator)

    g_loss = model.train_generator(noise)

    # D normalised with the batch's statistics (training mode), not its moving ones ...
    assert float(g_loss) == pytest.approx(_bce_real(twin(fake, training=True)), 1e-5)
    assert float(g_loss) != pytest.approx(_bce_real(twin(fake, training=False)), 1e-3)
    # ... and its moving statistics stayed as they were.
    assert _changed(statistics_before, _snapshot(model.discriminator)) == set()
    # Its own update does move them (once for the real batch, once for the fake one).
    model.train_discriminator(_real(), fake)
    assert _statistics(model.discriminator) <= _changed(
        statistics_before, _snapshot(model.discriminator)
    )


@pytest.mark.parametrize(
    "arch, options",
    [
        *[pytest.param(arch, {}, id=arch) for arch in ARCHITECTURES],
        pytest.param("mlp-bn", CONDITIONAL, id="mlp-bn-conditional"),
    ],
)
def test_shared_generator_pass_equals_two_separate_updates(arch, options):
    """train_step computes G(z) once for both updates; that must change nothing, except that
    the generator's moving statistics move once (as after the separate updates' first G(z)).
    A conditional step draws the fake labels after the noise, from the same seed, and both
    updates use them."""
    shared, separate = _gan(arch=arch, **options), _gan(arch=arch, **options)
    real = tf.constant(_real())
    real_labels = _labels(shared)
    shared.train_step(real if real_labels is None else (real, tf.constant(real_labels)))
    noise = separate.sample_noise(BATCH)  # the same draws train_step made
    fake_labels = separate.sample_labels(BATCH) if separate.num_classes else None
    fake = separate.generator(with_labels(noise, fake_labels), training=True)
    separate.train_discriminator(real, fake, real_labels, fake_labels)
    statistics_after_one_pass = {
        w.path: w.numpy() for w in separate.generator.non_trainable_weights
    }
    separate.train_generator(noise, fake_labels)  # its second G(z) moves them a second time
    for a, b in zip(
        shared.generator.variables + shared.discriminator.variables,
        separate.generator.variables + separate.discriminator.variables,
        strict=True,
    ):
        expected = statistics_after_one_pass.get(b.path, b.numpy())
        np.testing.assert_allclose(a.numpy(), expected, rtol=1e-6, atol=1e-6, err_msg=a.path)


def test_generator_moving_statistics_move_exactly_once_per_step():
    """mlp-bn's first BatchNorm after one step, by hand: momentum * initial + (1 - momentum)
    * the batch's statistics of LeakyReLU(Dense(z)) with the step's noise and initial weights."""
    model, twin = _gan(arch="mlp-bn"), _gan(arch="mlp-bn")
    dense, _, batch_norm = model.generator.layers[:3]
    kernel, bias = dense.kernel.numpy().astype(np.float64), dense.bias.numpy()
    noise = np.asarray(twin.sample_noise(BATCH), np.float64)  # the draw train_step makes
    inputs = noise @ kernel + bias
    inputs = np.where(inputs > 0, inputs, 0.2 * inputs)

    model.train_step(tf.constant(_real()))

    momentum = BN_MOMENTUM
    np.testing.assert_allclose(
        batch_norm.moving_mean.numpy(), (1 - momentum) * inputs.mean(axis=0), atol=1e-6
    )
    np.testing.assert_allclose(
        batch_norm.moving_variance.numpy(),
        momentum * 1.0 + (1 - momentum) * inputs.var(axis=0),  # biased variance, as Keras
        rtol=1e-5,
    )


def _fit(model, images, epochs=2):
    """fit() for `epochs` epochs on uint8 images; a conditional GAN's are labelled i mod 10."""
    steps = len(images) // BATCH
    labels = np.arange(len(images)) % CLASSES if model.num_classes else None
    dataset = data.make_dataset(images, BATCH, seed=0, epochs=epochs, labels=labels)
    return model.fit(
        dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False
    ).history


@pytest.mark.parametrize(
    "arch, jit, options",
    [
        ("mlp", False, {}),
        ("mlp", True, {}),
        ("mlp-bn", True, {}),
        ("dcgan", False, {}),
        ("mlp", True, CONDITIONAL),
        ("dcgan", False, CONDITIONAL),
    ],
)
def test_fit_trains_both_networks(arch, jit, options, images):
    model = _gan(jit=jit, arch=arch, **options)
    assert model.jit_compile is jit
    g_before, d_before = _snapshot(model.generator), _snapshot(model.discriminator)
    history = _fit(model, images)

    assert set(history) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(v).all() and len(v) == 2 for v in history.values())
    assert all(0 <= p <= 1 for p in history["d_real"] + history["d_fake"])
    steps = 2 * (len(images) // BATCH)
    assert int(model.d_optimizer.iterations) == int(model.g_optimizer.iterations) == steps
    g_trainable = {v.path for v in model.generator.trainable_variables}
    d_trainable = {v.path for v in model.discriminator.trainable_variables}
    assert g_trainable <= _changed(g_before, _snapshot(model.generator))
    assert d_trainable <= _changed(d_before, _snapshot(model.discriminator))


@pytest.mark.parametrize(
    "arch, options",
    [
        *[pytest.param(arch, {}, id=arch) for arch in ARCHITECTURES],
        pytest.param("mlp", CONDITIONAL, id="mlp-conditional"),
    ],
)
def test_several_steps_per_call_train_exactly_like_one_step_per_call(images, arch, options):
    one = _gan(steps_per_call=1, arch=arch, **options)
    several = _gan(steps_per_call=6, image_count=len(images), arch=arch, **options)
    assert several.steps_per_execution == 6  # 300 images // 16 = 18 steps per epoch
    history_one, history_several = _fit(one, images), _fit(several, images)
    for a, b in zip(one.variables, several.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert history_one == history_several


@pytest.mark.parametrize("steps_per_call", [1, 6])
def test_the_step_is_traced_once_for_the_whole_run(images, steps_per_call):
    model = _gan(steps_per_call=steps_per_call, image_count=len(images))
    traces = []
    train_step = model.train_step

    def counting_train_step(batch):
        traces.append(batch.shape)  # Python runs only while TensorFlow traces the graph
        return train_step(batch)

    model.train_step = counting_train_step
    _fit(model, images, epochs=3)
    assert traces == [(BATCH, 28, 28, 1)]


def _textbook_step(model: GAN, real) -> None:
    """The textbook's training step written out plainly, on `model`'s networks, optimizers and
    noise seed (not its train_step): z ~ N(0, I); D minimises the mean of BCE(1, D(x)) and
    BCE(0, D(G(z))); then G minimises BCE(1, D(G(z))) with D as just updated, on the same G(z)."""
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    generator, discriminator = model.generator, model.discriminator
    noise = keras.random.normal((BATCH, NOISE_DIM), seed=model.noise_seed)
    with tf.GradientTape() as g_tape:
        fake = generator(noise, training=True)
        with tf.GradientTape() as d_tape:
            real_logits = discriminator(real, training=True)
            fake_logits = discriminator(fake, training=True)
            d_loss = 0.5 * (
                bce(tf.ones_like(real_logits), real_logits)
                + bce(tf.zeros_like(fake_logits), fake_logits)
            )
        d_variables = discriminator.trainable_variables
        model.d_optimizer.apply(d_tape.gradient(d_loss, d_variables), d_variables)
        fake_logits = discriminator(fake, training=True)
        g_loss = bce(tf.ones_like(fake_logits), fake_logits)
    g_variables = generator.trainable_variables
    model.g_optimizer.apply(g_tape.gradient(g_loss, g_variables), g_variables)


@pytest.mark.parametrize("arch", ["mlp", "mlp-bn"])
def test_the_default_step_is_bitwise_the_textbook_step(arch):
    """With every option at its default (gan.config.Config()), GAN.train_step computes exactly
    the textbook's algorithm: the quality options change none of its values."""
    ours, textbook = _gan(arch=arch), _gan(arch=arch)
    for step in range(3):
        real = tf.constant(_real() * (1 - 0.1 * step))
        ours.train_step(real)
        _textbook_step(textbook, real)
    for a, b in zip(ours.variables, textbook.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert int(ours.g_optimizer.iterations) == 3


def test_separate_learning_rates_each_change_their_own_network_only():
    """--g-lr changes the generator's updates and nothing of the discriminator's first step;
    --d-lr the reverse (after one step each network has seen only its own optimizer)."""
    plain, g_faster, d_faster = _gan(), _gan(g_lr=1e-3), _gan(d_lr=1e-3)
    real = tf.constant(_real())
    for model in (plain, g_faster, d_faster):
        model.train_step(real)

    def same(a, b):  # the same values, variable by variable (their paths differ by model)
        pairs = zip(a.variables, b.variables, strict=True)
        return all(np.array_equal(x.numpy(), y.numpy()) for x, y in pairs)

    assert same(plain.discriminator, g_faster.discriminator)
    assert not same(plain.generator, g_faster.generator)
    assert not same(plain.discriminator, d_faster.discriminator)
    # the generator's update sees the other D, but its own learning rate is unchanged
    assert float(d_faster.g_optimizer.learning_rate) == float(plain.g_optimizer.learning_rate)
    assert float(g_faster.d_optimizer.learning_rate) == float(plain.d_optimizer.learning_rate)


# --- the quality options (--ema, --r1, --augment, --loss, --lr-schedule) -----------------


def test_with_ema_the_networks_train_bitwise_as_without_it(images):
    plain, averaged = _gan(arch="mlp-bn"), _gan(arch="mlp-bn", ema=0.9)
    history_plain, history_averaged = _fit(plain, images), _fit(averaged, images)
    _assert_same_networks(plain, averaged)
    assert history_plain == history_averaged
    assert plain.sampler is plain.generator and averaged.sampler is averaged.ema_generator


@pytest.mark.parametrize(
    "options",
    [{}, {**CONDITIONAL, "conditional_bn": True}],
    ids=["mlp-bn", "mlp-bn-conditional-bn"],
)
def test_ema_averages_every_generator_variable_after_each_generator_update(options):
    """After one step: ema = decay * (the initial generator) + (1 - decay) * (the updated
    one), for the weights and the BatchNorm moving statistics alike. The average pairs the
    variables by position: the copy's must be the generator's, in the same order (conditional
    BatchNorm's per-class scales and shifts have the same shapes)."""
    decay = 0.9
    model = _gan(arch="mlp-bn", ema=decay, **options)
    paths = [v.path.removeprefix("generator/") for v in model.generator.variables]
    assert [v.path.removeprefix("generator/") for v in model.ema_generator.variables] == paths
    initial = [v.numpy() for v in model.generator.variables]
    assert all(
        np.array_equal(a.numpy(), b)
        for a, b in zip(model.ema_generator.variables, initial, strict=True)
    )
    real = tf.constant(_real())
    model.train_step(real if not model.num_classes else (real, tf.constant(_labels(model))))
    moved = 0
    for average, start, now in zip(
        model.ema_generator.variables, initial, model.generator.variables, strict=True
    ):
        expected = decay * start + (1 - decay) * now.numpy()
        np.testing.assert_allclose(average.numpy(), expected, rtol=1e-6, atol=1e-7)
        moved += not np.array_equal(start, now.numpy())
    assert moved == len(initial)  # every weight and statistic of mlp-bn's generator moved


def _smooth_gan(**options) -> GAN:
    """A GAN whose discriminator is smooth and deterministic (no dropout): 784 -> 8 tanh -> 1."""
    discriminator = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    keras.utils.set_random_seed(0)
    model = GAN(mlp_generator(NOISE_DIM), discriminator, noise_dim=NOISE_DIM, seed=0, **options)
    model.compile(
        d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
    )
    return model


def test_r1_penalty_equals_finite_difference_gradient_norms():
    gamma, count = 10.0, 3
    model = _smooth_gan(r1=gamma)
    real = _real(count).astype(np.float64)
    _, penalty = model._r1_penalty(real.astype(np.float32))

    weights = [np.asarray(w, np.float64) for w in model.discriminator.get_weights()]

    def logits(images):  # the discriminator in float64, by hand
        hidden = np.tanh(images.reshape(len(images), -1) @ weights[0] + weights[1])
        return (hidden @ weights[2] + weights[3])[:, 0]

    step, norms = 1e-4, []
    for image in real.reshape(count, -1):
        shifts = np.eye(image.size) * step
        plus, minus = logits(image + shifts), logits(image - shifts)
        norms.append(np.sum(((plus - minus) / (2 * step)) ** 2))
    assert float(penalty) == pytest.approx(gamma / 2 * np.mean(norms), rel=1e-4)


def test_r1_penalty_is_added_to_the_discriminator_loss_and_shapes_its_update():
    with_r1, without = _smooth_gan(r1=10.0), _smooth_gan()
    real, fake = _real(), _noise_images()
    _, penalty = with_r1._r1_penalty(real)
    d_loss_r1, _, _ = with_r1.train_discriminator(real, fake)
    d_loss, _, _ = without.train_discriminator(real, fake)
    assert float(penalty) > 0
    assert float(d_loss_r1) == pytest.approx(float(d_loss) + float(penalty), rel=1e-5)
    changed = [
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(with_r1.discriminator.weights, without.discriminator.weights, strict=True)
    ]
    # The penalty's gradient reaches every weight but the output bias, which shifts D(x)
    # without changing its gradient with respect to x.
    assert changed == [True, True, True, False]


def _noise_images():
    return np.random.default_rng(3).uniform(-1, 1, (BATCH, 28, 28, 1)).astype(np.float32)


def test_augmentation_is_applied_to_real_and_fake_images_in_both_updates(monkeypatch):
    """What D sees in each update is what gan.augment returns: here a recording stand-in that
    negates the images (same shapes and range)."""
    seen = []

    def negate(images, names, seed):
        seen.append((np.asarray(images).copy(), names))
        return -images

    monkeypatch.setattr("gan.gan.diff_augment", negate)
    model = _smooth_gan(augment=("translation", "cutout"))
    real, fake = _real(), _noise_images()
    twin = keras.models.clone_model(model.discriminator)
    twin.set_weights(model.discriminator.get_weights())

    _, real_logits, fake_logits = model.train_discriminator(real, fake)
    np.testing.assert_allclose(real_logits, twin(-real), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fake_logits, twin(-fake), rtol=1e-5, atol=1e-6)
    noise = _noise()
    generated = model.generator(noise, training=True)  # before G's update changes G
    model.train_generator(noise)
    assert len(seen) == 3  # real and fake in D's update, fake in G's
    np.testing.assert_array_equal(seen[0][0], real)
    np.testing.assert_array_equal(seen[1][0], fake)
    np.testing.assert_allclose(seen[2][0], generated, rtol=1e-5, atol=1e-6)
    assert all(names == ("translation", "cutout") for _, names in seen)


def test_augmentation_changes_only_what_the_discriminator_sees(monkeypatch):
    """With --augment's transformation replaced by the identity, a run trains bitwise as one
    without --augment: its own random numbers (seed + 1) leave the weights' initialisation,
    the noise and the dropout masks as they were."""
    real = tf.constant(_real())
    plain = _gan(arch="mlp-bn")
    seeds = []

    def draw_and_keep(images, names, seed):  # draws its random numbers, as DiffAugment does
        seeds.append(seed)
        keras.random.uniform((BATCH,), seed=seed)
        return images

    monkeypatch.setattr("gan.gan.diff_augment", draw_and_keep)
    augmented = _gan(arch="mlp-bn", augment="translation,cutout")
    for _ in range(2):
        plain.train_step(real)
        augmented.train_step(real)
    assert len(seeds) == 6 and all(seed is augmented.augment_seed for seed in seeds)
    _assert_same_networks(plain, augmented)


def test_hinge_loss_in_the_step_equals_hand_computed_values():
    logit = 0.25
    model = _constant_logit_gan(logit)
    model.loss_fn = Hinge()
    metrics = model.train_step(tf.constant(_real()))
    assert float(metrics["d_loss"]) == pytest.approx(0.5 * ((1 - logit) + (1 + logit)), 1e-6)
    # G's loss is -logit of D as just updated: it moved away from 0.25, but stays near.
    assert float(metrics["g_loss"]) == pytest.approx(-logit, abs=0.01)
    assert float(metrics["g_loss"]) != -logit


@pytest.mark.parametrize("schedule, halfway", [("linear", 0.5), ("cosine", 0.5), ("constant", 1.0)])
def test_learning_rate_schedules_decay_to_zero_at_the_last_step(schedule, halfway):
    keras.utils.set_random_seed(0)
    config = Config(noise_dim=NOISE_DIM, batch_size=BATCH, epochs=4, lr_schedule=schedule)
    config = config.replace(g_lr=1e-3, d_lr=4e-3)  # two time scales
    model = build_gan(config.resolved(10 * BATCH, has_gpu=False), steps_per_epoch=10)
    for optimizer, initial in ((model.g_optimizer, 1e-3), (model.d_optimizer, 4e-3)):
        rates = []
        for step in (0, 20, 40):  # of 4 epochs x 10 steps
            optimizer.iterations.assign(step)
            rates.append(float(optimizer.learning_rate))
        end = 0.0 if schedule != "constant" else initial
        assert rates == pytest.approx([initial, halfway * initial, end], abs=1e-9)


# --- class-conditional GANs (--conditional) ----------------------------------------------


def test_fake_labels_are_uniform_over_the_classes_and_come_from_the_noise_seed():
    model, twin = _gan(**CONDITIONAL), _gan(**CONDITIONAL)
    labels = np.asarray(model.sample_labels(20_000))
    assert labels.dtype == np.int32 and labels.min() == 0 and labels.max() == CLASSES - 1
    # 2,000 expected per class, standard deviation 42: five of them either way
    assert np.abs(np.bincount(labels) - 2_000).max() < 5 * 42
    # Drawn from the noise seed's state (which checkpoints keep): the same seed state draws
    # the same labels, and a draw advances it.
    np.testing.assert_array_equal(np.asarray(twin.sample_labels(20_000)), labels)
    assert not np.array_equal(np.asarray(twin.sample_labels(20_000)), labels)


def test_the_discriminator_scores_real_images_with_their_own_labels_and_fakes_with_theirs():
    """d_real and d_fake of one step, by hand with the initial networks: the real images with
    the labels of the batch, the fakes with the labels the step drew after the noise.
    (mlp-bn's discriminator has no dropout, so its training-mode output is deterministic.)"""
    model, twin = _gan(arch="mlp-bn", **CONDITIONAL), _gan(arch="mlp-bn", **CONDITIONAL)
    real, real_labels = tf.constant(_real()), _labels(model)
    discriminator, generator = twin.discriminator, twin.generator

    def d_mean(images, labels):
        logits = discriminator(with_labels(images, labels), training=True)
        return float(np.mean(1 / (1 + np.exp(-np.asarray(logits, np.float64)))))

    noise, fake_labels = twin.sample_noise(BATCH), twin.sample_labels(BATCH)
    fake = generator(with_labels(noise, fake_labels), training=True)
    metrics = model.train_step((real, tf.constant(real_labels)))

    assert float(metrics["d_real"]) == pytest.approx(d_mean(real, real_labels), abs=1e-6)
    assert float(metrics["d_fake"]) == pytest.approx(d_mean(fake, fake_labels), abs=1e-6)
    # The labels matter: with other labels, D scores the same images differently.
    assert abs(d_mean(real, (real_labels + 1) % CLASSES) - d_mean(real, real_labels)) > 1e-4


def test_every_gradient_of_a_conditional_gan_is_a_dense_tensor():
    """Keras' Adam, which trains under --strategy, gets the second moment of an IndexedSlices
    gradient (a keras.layers.Embedding's) wrong when a class repeats in the batch: it squares
    the rows before adding them. The class vectors are Dense layers on one-hots instead."""
    model = _gan(arch="dcgan", **CONDITIONAL)
    labels = np.zeros(BATCH, np.int32)  # one class, sixteen times
    with tf.GradientTape(persistent=True) as tape:
        fake = model.generator(with_labels(_noise(), labels), training=True)
        logits = model.discriminator(with_labels(fake, labels), training=True)
    for network in (model.generator, model.discriminator):
        gradients = tape.gradient(logits, network.trainable_variables)
        assert all(type(g) is not tf.IndexedSlices and g is not None for g in gradients)
