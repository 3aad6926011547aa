"""The networks match the textbook (and the exercises' upgrades) exactly and output what the
GAN expects."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gan import config, models


def test_textbook_parameter_counts():
    assert models.build_generator("mlp", 128).count_params() == 566_800
    assert models.build_discriminator("mlp").count_params() == 201_217


def test_textbook_layer_widths():
    generator = models.build_generator("mlp", 128)
    dense = [layer for layer in generator.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [
        (256, "relu"),
        (512, "relu"),
        (784, "tanh"),
    ]
    discriminator = models.build_discriminator("mlp")
    dropout = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in dropout] == [0.3]


@pytest.mark.parametrize("arch", config.ARCHITECTURES)
def test_generator_maps_noise_to_images_in_tanh_range(arch):
    generator = models.build_generator(arch, 16)
    noise = np.random.default_rng(0).normal(size=(5, 16)) * 50
    for training in (False, True):
        images = generator(noise, training=training)
        assert images.shape == (5, 28, 28, 1)
        assert np.all(np.abs(np.asarray(images)) <= 1)


@pytest.mark.parametrize("arch", config.ARCHITECTURES)
def test_discriminator_outputs_unbounded_logits_not_probabilities(arch):
    discriminator = models.build_discriminator(arch)
    assert discriminator.layers[-1].activation.__name__ == "linear"  # no sigmoid layer
    images = np.random.default_rng(0).uniform(-1, 1, (64, 28, 28, 1)).astype("float32")
    discriminator.layers[-1].bias.assign([5.0])  # a logit past 1 cannot be a probability
    logits = np.asarray(discriminator(images, training=False))
    assert logits.shape == (64, 1) and logits.max() > 1


def _convolution(layer) -> tuple:
    return layer.filters, layer.kernel_size, layer.strides, layer.padding


def _summary(model) -> list:
    """(layer type, its defining setting) for every layer, to compare with a specification."""
    described = {
        keras.layers.Dense: lambda layer: (layer.units, layer.activation.__name__),
        keras.layers.LeakyReLU: lambda layer: layer.negative_slope,
        keras.layers.BatchNormalization: lambda layer: (layer.momentum, layer.synchronized),
        keras.layers.Dropout: lambda layer: layer.rate,
        keras.layers.Conv2D: _convolution,
        keras.layers.Conv2DTranspose: _convolution,
        keras.layers.Reshape: lambda layer: layer.target_shape,
        keras.layers.Flatten: lambda layer: None,
    }
    return [(type(layer).__name__, described[type(layer)](layer)) for layer in model.layers]


def test_mlp_bn_is_the_upgraded_mlp_gan():
    generator, discriminator = (
        models.build_generator("mlp-bn", 100),
        models.build_discriminator("mlp-bn"),
    )
    hidden = [
        block
        for units in (256, 512, 1024)
        for block in (
            ("Dense", (units, "linear")),
            ("LeakyReLU", 0.2),
            ("BatchNormalization", (0.8, True)),
        )
    ]
    assert _summary(generator) == [*hidden, ("Dense", (784, "tanh")), ("Reshape", (28, 28, 1))]
    assert _summary(discriminator) == [
        ("Flatten", None),
        ("Dense", (512, "linear")),
        ("LeakyReLU", 0.2),
        ("Dense", (256, "linear")),
        ("LeakyReLU", 0.2),
        ("Dense", (1, "linear")),
    ]
    # noise 100 -> 256 -> 512 -> 1024 -> 784, with BatchNorm's 4 statistics per unit
    assert generator.count_params() == (
        (100 * 256 + 256) + (256 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    ) + 4 * (256 + 512 + 1024)


def test_dcgan_upsamples_7x7x128_to_28x28_and_downsamples_with_strided_convolutions():
    generator, discriminator = (
        models.build_generator("dcgan", 100),
        models.build_discriminator("dcgan"),
    )
    shapes = [tuple(layer.output.shape[1:]) for layer in generator.layers]
    assert shapes == [
        (7 * 7 * 128,),
        (7 * 7 * 128,),
        (7 * 7 * 128,),
        (7, 7, 128),
        (14, 14, 64),
        (14, 14, 64),
        (14, 14, 64),
        (28, 28, 1),
    ]
    batch_norms = [setting for name, setting in _summary(generator) if name == "BatchNormalization"]
    assert batch_norms == [(0.8, True)] * 2  # synchronized: global statistics under a strategy
    assert _summary(generator)[-1] == ("Conv2DTranspose", (1, (4, 4), (2, 2), "same"))
    assert generator.layers[-1].activation.__name__ == "tanh"
    assert _summary(discriminator) == [
        ("Conv2D", (64, (4, 4), (2, 2), "same")),
        ("LeakyReLU", 0.2),
        ("Dropout", 0.3),
        ("Conv2D", (128, (4, 4), (2, 2), "same")),
        ("LeakyReLU", 0.2),
        ("Dropout", 0.3),
        ("Flatten", None),
        ("Dense", (1, "linear")),
    ]


@pytest.mark.parametrize("arch", ["mlp", "mlp-bn"])
def test_hidden_widths_set_the_mlps_depth_and_widths(arch):
    generator = models.build_generator(arch, 8, hidden=(32, 64, 128))
    discriminator = models.build_discriminator(arch, hidden=(96, 48, 24))
    dense = [d.units for d in generator.layers if isinstance(d, keras.layers.Dense)]
    assert dense == [32, 64, 128, 784]
    dense = [d.units for d in discriminator.layers if isinstance(d, keras.layers.Dense)]
    assert dense == [96, 48, 24, 1]


def test_deeper_textbook_discriminator_has_dropout_after_every_hidden_layer():
    summary = _summary(models.build_discriminator("mlp", hidden=(512, 256)))
    assert summary == [
        ("Flatten", None),
        ("Dense", (512, "relu")),
        ("Dropout", 0.3),
        ("Dense", (256, "relu")),
        ("Dropout", 0.3),
        ("Dense", (1, "linear")),
    ]


def test_the_defaults_are_the_widths_config_names():
    for arch, (g_hidden, d_hidden) in config.MLP_HIDDEN.items():
        default = models.build_generator(arch, 8), models.build_discriminator(arch)
        given = (
            models.build_generator(arch, 8, g_hidden),
            models.build_discriminator(arch, d_hidden),
        )
        assert [_summary(m) for m in default] == [_summary(m) for m in given]


def test_dcgan_refuses_hidden_widths():
    with pytest.raises(ValueError, match="dcgan has fixed layers"):
        models.build_generator("dcgan", 8, hidden=(256,))
    with pytest.raises(ValueError, match="dcgan has fixed layers"):
        models.build_discriminator("dcgan", hidden=(256,))


def test_every_cli_architecture_has_builders():
    assert set(config.ARCHITECTURES) == set(models.ARCHITECTURES)


@pytest.mark.parametrize("arch", config.ARCHITECTURES)
def test_spectral_norm_wraps_every_dense_and_conv_layer_and_bounds_their_norm(arch):
    # Seeded: from some random start vectors, 30 power iterations leave sigma 2 % off.
    keras.utils.set_random_seed(0)
    discriminator = models.discriminator_for(config.Config(arch=arch, spectral_norm=True))
    wrapped = [
        layer
        for layer in discriminator.layers
        if isinstance(layer, keras.layers.SpectralNormalization)
    ]
    plain = models.discriminator_for(config.Config(arch=arch))
    kinds = (keras.layers.Dense, keras.layers.Conv2D)
    assert len(wrapped) == sum(isinstance(layer, kinds) for layer in plain.layers) >= 2
    images = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    for _ in range(30):  # each training call: one power iteration, then the kernel / sigma
        logits = discriminator(images, training=True)
    assert logits.dtype == "float32" and logits.shape == (8, 1)
    for layer in wrapped:
        kernel = layer.layer.kernel.numpy()
        sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert sigma == pytest.approx(1.0, abs=0.02), layer.name


# --- --conditional: the label embedding joined to the noise, the projection discriminator ---

CLASSES = 10


def _conditional(arch="mlp", **options) -> config.Config:
    keras.utils.set_random_seed(0)
    return config.Config(arch=arch, conditional=True, noise_dim=8, **options).resolved(
        1000, False, CLASSES
    )


def _float64(layer) -> list:
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def test_conditional_mlp_generator_is_the_textbook_one_on_noise_joined_to_the_label_embedding():
    generator = models.generator_for(_conditional())
    noise = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    labels = np.array([0, 3, 3, 7, 9], np.int32)
    (table,) = _float64(generator.get_layer(models.GENERATOR_EMBEDDING))
    assert table.shape == (CLASSES, models.LABEL_EMBEDDING)
    hidden = np.concatenate([noise, table[labels]], axis=1)  # by hand, in float64
    dense = [
        layer
        for layer in generator.layers
        if isinstance(layer, keras.layers.Dense) and layer.name != models.GENERATOR_EMBEDDING
    ]
    assert [d.units for d in dense] == [256, 512, 784]  # the textbook generator's layers
    for layer in dense:
        kernel, bias = _float64(layer)
        hidden = hidden @ kernel + bias
        hidden = np.tanh(hidden) if layer is dense[-1] else np.maximum(hidden, 0)
    images = generator(models.with_labels(noise, labels), training=False)
    assert images.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(np.asarray(images).reshape(5, -1), hidden, atol=1e-5)


@pytest.mark.parametrize("arch", config.ARCHITECTURES)
def test_every_conditional_generator_draws_the_class_it_is_given(arch):
    generator = models.generator_for(_conditional(arch))
    assert models.generator_inputs(generator) == (8, CLASSES)
    noise = np.repeat(np.random.default_rng(0).standard_normal((1, 8)), 2, 0).astype("float32")
    # Let the embedding matter as much as the noise (it starts near 0).
    embedding = generator.get_layer(models.GENERATOR_EMBEDDING)
    embedding.kernel.assign(np.random.default_rng(1).standard_normal((10, 50)))
    same, other = (
        np.asarray(generator(models.with_labels(noise, labels), training=False))
        for labels in ([4, 4], [4, 5])
    )
    np.testing.assert_array_equal(same[0], same[1])  # same noise, same class: same image
    assert np.abs(other[0] - other[1]).max() > 0.01  # another class: another image
    assert np.abs(np.asarray(other)).max() <= 1  # tanh range


@pytest.mark.parametrize("arch", config.BATCHNORM_GENERATORS)
def test_a_conditional_bn_generator_draws_the_class_it_is_given_and_loads_back(arch, tmp_path):
    generator = models.generator_for(_conditional(arch, conditional_bn=True))
    assert models.generator_inputs(generator) == (8, CLASSES)
    # The per-class scales start at 1 and the shifts at 0: every class draws alike at first.
    noise = np.repeat(np.random.default_rng(0).standard_normal((1, 8)), 2, 0).astype("float32")
    same, other = (
        np.asarray(generator(models.with_labels(noise, labels), training=False))
        for labels in ([4, 4], [4, 5])
    )
    np.testing.assert_array_equal(same, other)
    shifts = [layer for layer in generator.layers if "_shift_" in layer.name]
    for layer in shifts:
        layer.kernel.assign(np.random.default_rng(1).standard_normal(layer.kernel.shape))
    other = np.asarray(generator(models.with_labels(noise, [4, 5]), training=False))
    assert np.abs(other[0] - other[1]).max() > 0.01  # another class: another image
    generator.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    assert models.generator_inputs(loaded) == (8, CLASSES)
    np.testing.assert_array_equal(loaded(models.with_labels(noise, [4, 5])), other)


def test_conditional_bn_normalises_then_scales_and_shifts_by_the_class_by_hand():
    """mlp-bn with --conditional-bn, by hand in float64 outside training: each hidden layer is
    h = leaky(h W + b), then (h - mean) / sqrt(var + eps) * scale[y] + shift[y] with the
    moving statistics and the class's learned vectors; the noise enters alone."""
    generator = models.generator_for(_conditional("mlp-bn", conditional_bn=True, g_hidden=(16,)))
    rng = np.random.default_rng(2)
    tables = {}
    for layer in generator.layers:
        if layer.name.startswith(models.GENERATOR_EMBEDDING):
            layer.kernel.assign(rng.standard_normal(layer.kernel.shape))
            tables[layer.name.split("_")[2]] = _float64(layer)[0]
    (norm,) = [
        layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    norm.moving_mean.assign(rng.standard_normal(16))
    norm.moving_variance.assign(rng.uniform(0.5, 2, 16))
    assert not norm.center and not norm.scale  # the class's vectors replace gamma and beta
    (w1, b1), (w2, b2) = (
        _float64(layer)
        for layer in generator.layers
        if isinstance(layer, keras.layers.Dense) and layer.name.startswith("dense")
    )
    noise = rng.standard_normal((5, 8)).astype(np.float32)
    labels = np.array([0, 3, 3, 7, 9], np.int32)
    hidden = noise.astype(np.float64) @ w1 + b1
    hidden = np.where(hidden > 0, hidden, models.LEAK * hidden)
    mean, variance = (np.asarray(v, np.float64) for v in (norm.moving_mean, norm.moving_variance))
    hidden = (hidden - mean) / np.sqrt(variance + norm.epsilon)
    hidden = hidden * tables["scale"][labels] + tables["shift"][labels]
    expected = np.tanh(hidden @ w2 + b2)
    images = generator(models.with_labels(noise, labels), training=False)
    np.testing.assert_allclose(np.asarray(images).reshape(5, -1), expected, atol=1e-5)


def test_projection_discriminator_logit_is_psi_of_phi_plus_the_class_vector_dot_phi():
    """logit = psi(phi(x)) + embed(y) . phi(x) (Miyato & Koyama 2018), by hand for mlp:
    phi(x) = relu(x W1 + b1) (dropout is off outside training), psi(h) = h w2 + b2."""
    discriminator = models.discriminator_for(_conditional())
    projection = discriminator.get_layer(models.PROJECTION)
    projection.kernel.assign(np.random.default_rng(2).standard_normal((CLASSES, 256)) * 0.1)
    images = np.random.default_rng(3).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 8, 9], np.int32)
    first, last = (
        layer
        for layer in discriminator.layers
        if layer.name != models.PROJECTION and isinstance(layer, keras.layers.Dense)
    )
    (w1, b1), (w2, b2), (table,) = _float64(first), _float64(last), _float64(projection)
    phi = np.maximum(images.reshape(6, -1).astype(np.float64) @ w1 + b1, 0)
    expected = phi @ w2 + b2 + np.sum(table[labels] * phi, axis=1, keepdims=True)
    logits = discriminator(models.with_labels(images, labels), training=False)
    assert logits.dtype == "float32" and logits.shape == (6, 1)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", config.ARCHITECTURES)
def test_spectral_norm_also_bounds_the_projection_and_its_gradient_flows(arch):
    """keras.layers.SpectralNormalization casts its output to its input's dtype: around an
    Embedding (int labels) it would zero the projection and its gradient. The projection is
    a Dense layer on the label's one-hot, which the wrapper handles like any other."""
    import tensorflow as tf

    discriminator = models.discriminator_for(_conditional(arch, spectral_norm=True))
    (wrapped,) = [
        layer
        for layer in discriminator.layers
        if isinstance(layer, keras.layers.SpectralNormalization)
        and layer.layer.name == models.PROJECTION
    ]
    images = tf.random.stateless_uniform((8, 28, 28, 1), (0, 1), -1, 1)
    labels = tf.range(8)
    for _ in range(30):  # each training call: one power iteration, then the kernel / sigma
        discriminator([images, labels], training=True)
    with tf.GradientTape() as tape:
        logits = discriminator([images, labels], training=True)
    (gradient,) = tape.gradient(logits, [wrapped.layer.kernel])
    assert gradient is not None and np.abs(np.asarray(gradient)).sum() > 0
    kernel = wrapped.layer.kernel.numpy()
    assert np.linalg.svd(kernel, compute_uv=False)[0] == pytest.approx(1.0, abs=0.05)


def test_generator_inputs_tell_noise_from_noise_and_label_and_refuse_other_networks():
    assert models.generator_inputs(models.build_generator("mlp", 16)) == (16, None)
    assert models.generator_inputs(models.generator_for(_conditional("dcgan"))) == (8, CLASSES)
    with pytest.raises(ValueError, match="neither noise nor"):
        models.generator_inputs(models.build_discriminator("mlp"))
    with pytest.raises(ValueError, match="neither noise nor"):
        models.generator_inputs(models.discriminator_for(_conditional()))


def test_the_unconditional_networks_are_unchanged_by_the_conditional_option():
    plain = config.Config(noise_dim=8).resolved(1000, False)
    assert models.generator_for(plain).count_params() == (8 * 256 + 256) + (256 * 512 + 512) + (
        512 * 784 + 784
    )
    conditional = models.generator_for(_conditional())
    body = models.build_generator("mlp", 8 + models.LABEL_EMBEDDING)
    assert conditional.count_params() == body.count_params() + CLASSES * models.LABEL_EMBEDDING
    projection = models.discriminator_for(_conditional())
    assert projection.count_params() == models.build_discriminator("mlp").count_params() + (
        CLASSES * 256
    )
