"""The networks. Images are float32 (B, 28, 28, 1) in [-1, 1]; noise is float32 (B, noise_dim).

`build_generator(arch, noise_dim, hidden)` maps noise to images (tanh output);
`build_discriminator(arch, hidden)` maps images to one real/fake **logit** per image (no
sigmoid: the loss applies it, which is numerically stable). Each architecture (`--arch`) is one
entry of ARCHITECTURES:

    mlp      the textbook's: ReLU MLPs, dropout in the discriminator
    mlp-bn   the usual upgraded MLP GAN: LeakyReLU 0.2 everywhere, BatchNormalization (momentum
             0.8) after each hidden layer of the generator
    dcgan    convolutional: the generator upsamples 7x7x128 to 28x28x1 with transposed
             convolutions and BatchNormalization, the discriminator has strided convolutions

`hidden` (the widths of the hidden layers, --g-hidden / --d-hidden) applies to the MLP
architectures; None means the architecture's default (gan.config.MLP_HIDDEN).

--conditional wraps any architecture's networks (`conditional_generator`,
`projection_discriminator`): they then also take int32 labels (B,) in 0..num_classes-1. With
--conditional-bn the generator of an architecture with BatchNorm takes the label through
conditional BatchNorm instead (`conditional_bn_generator`).
"""

from __future__ import annotations

import keras
from keras import layers

from gan.config import MLP_HIDDEN

IMAGE_SHAPE = (28, 28, 1)
IMAGE_SIZE = 28 * 28
# Under a mixed-precision policy the networks compute in float16 or bfloat16, but their last
# layers output float32: logits feed the losses, whose logs and sums need float32's precision,
# and images are float32 everywhere else. Under the default float32 policy this changes nothing.
OUTPUT_DTYPE = "float32"
LEAK = 0.2  # LeakyReLU slope of the upgraded architectures
BN_MOMENTUM = 0.8  # moving statistics follow the fast-changing generator closely
# --conditional: the length of the generator's learned label embedding, joined to the noise
# (50, as in the usual Keras conditional GANs). Through the first layer it adds a learned
# vector per class to the pre-activations; 50 >= the 10 classes leaves those independent.
LABEL_EMBEDDING = 50
# Layer names: how a loaded network is recognised (a generator's label embeddings all start so).
GENERATOR_EMBEDDING = "label_embedding"
PROJECTION = "label_projection"


def mlp_generator(noise_dim: int, hidden=MLP_HIDDEN["mlp"][0]) -> keras.Sequential:
    """The textbook generator: noise -> 256 relu -> 512 relu -> 784 tanh (566,800 params
    for noise_dim 128); `hidden` changes the hidden layers' widths and number."""
    return _mlp_generator(noise_dim, hidden, lambda units: [layers.Dense(units, activation="relu")])


def mlp_discriminator(hidden=MLP_HIDDEN["mlp"][1]) -> keras.Sequential:
    """The textbook discriminator: 784 -> 256 relu -> dropout 0.3 -> 1 logit (201,217 params);
    `hidden` changes the hidden layers' widths and number (each followed by dropout 0.3)."""
    return _mlp_discriminator(
        hidden, lambda units: [layers.Dense(units, activation="relu"), layers.Dropout(0.3)]
    )


def mlp_bn_generator(noise_dim: int, hidden=MLP_HIDDEN["mlp-bn"][0]) -> keras.Sequential:
    """noise -> (Dense, LeakyReLU 0.2, BatchNormalization) per hidden width -> 784 tanh."""
    return _mlp_generator(
        noise_dim,
        hidden,
        lambda units: [
            layers.Dense(units),
            layers.LeakyReLU(LEAK),
            layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=True),
        ],
    )


def mlp_bn_discriminator(hidden=MLP_HIDDEN["mlp-bn"][1]) -> keras.Sequential:
    """784 -> (Dense, LeakyReLU 0.2) per hidden width -> 1 logit; no dropout, no BatchNorm."""
    return _mlp_discriminator(hidden, lambda units: [layers.Dense(units), layers.LeakyReLU(LEAK)])


def _mlp_generator(noise_dim: int, hidden, block) -> keras.Sequential:
    """noise -> block(width) for each hidden width -> Dense 784 tanh -> 28x28x1.
    block: width -> the layers of one hidden layer."""
    return keras.Sequential(
        [
            keras.Input((noise_dim,)),
            *[layer for units in hidden for layer in block(units)],
            layers.Dense(IMAGE_SIZE, activation="tanh"),
            layers.Reshape(IMAGE_SHAPE, dtype=OUTPUT_DTYPE),
        ],
        name="generator",
    )


def _mlp_discriminator(hidden, block) -> keras.Sequential:
    """28x28x1 -> 784 -> block(width) for each hidden width -> Dense 1 (the logit)."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            layers.Flatten(),
            *[layer for units in hidden for layer in block(units)],
            layers.Dense(1, dtype=OUTPUT_DTYPE),
        ],
        name="discriminator",
    )


def dcgan_generator(noise_dim: int) -> keras.Sequential:
    """noise -> Dense 7x7x128 -> BN, LeakyReLU -> Conv2DTranspose 64 (14x14) -> BN, LeakyReLU
    -> Conv2DTranspose 1 (28x28) tanh. Kernels 4x4 with stride 2: a multiple of the stride,
    so every output pixel gets the same number of kernel taps (no checkerboard)."""
    return keras.Sequential(
        [
            keras.Input((noise_dim,)),
            layers.Dense(7 * 7 * 128, use_bias=False),  # BatchNorm's beta is the bias
            layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=True),
            layers.LeakyReLU(LEAK),
            layers.Reshape((7, 7, 128)),
            layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=True),
            layers.LeakyReLU(LEAK),
            layers.Conv2DTranspose(
                1, 4, strides=2, padding="same", activation="tanh", dtype=OUTPUT_DTYPE
            ),
        ],
        name="generator",
    )


def dcgan_discriminator() -> keras.Sequential:
    """28x28x1 -> Conv2D 64 stride 2 (14x14) -> Conv2D 128 stride 2 (7x7), each LeakyReLU 0.2
    and dropout 0.3 -> 1 logit. No BatchNorm: the DCGAN paper leaves it out of the
    discriminator's input layer, and the updates here stay simple without it."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            layers.Conv2D(64, 4, strides=2, padding="same"),
            layers.LeakyReLU(LEAK),
            layers.Dropout(0.3),
            layers.Conv2D(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(LEAK),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(1, dtype=OUTPUT_DTYPE),
        ],
        name="discriminator",
    )


# arch name -> (generator builder taking noise_dim[, hidden], discriminator builder [hidden]);
# the builders of the architectures in MLP_HIDDEN take `hidden`, the others do not.
ARCHITECTURES = {
    "mlp": (mlp_generator, mlp_discriminator),
    "mlp-bn": (mlp_bn_generator, mlp_bn_discriminator),
    "dcgan": (dcgan_generator, dcgan_discriminator),
}


def build_generator(arch: str, noise_dim: int, hidden: tuple[int, ...] | None = None):
    """The generator of `arch`: float32 (B, noise_dim) -> float32 (B, 28, 28, 1) in [-1, 1].
    hidden: widths of its hidden layers (MLP architectures only); None: the default."""
    return ARCHITECTURES[arch][0](noise_dim, *_hidden(arch, hidden))


def build_discriminator(arch: str, hidden: tuple[int, ...] | None = None):
    """The discriminator of `arch`: float32 (B, 28, 28, 1) -> logits float32 (B, 1).
    hidden: widths of its hidden layers (MLP architectures only); None: the default."""
    return ARCHITECTURES[arch][1](*_hidden(arch, hidden))


def generator_for(config) -> keras.Model:
    """The generator a gan.config.Config describes: --arch, --noise-dim, --g-hidden,
    --conditional (with its resolved num_classes) or --self-condition (config.classes)."""
    if not config.classes:
        return build_generator(config.arch, config.noise_dim, config.g_hidden)
    if config.conditional_bn:
        body = build_generator(config.arch, config.noise_dim, config.g_hidden)
        return conditional_bn_generator(body, config.classes)
    body = build_generator(config.arch, config.noise_dim + LABEL_EMBEDDING, config.g_hidden)
    return conditional_generator(body, config.noise_dim, config.classes)


def discriminator_for(config) -> keras.Model:
    """The discriminator a gan.config.Config describes: --arch, --d-hidden, --conditional
    (with its resolved num_classes) or --self-condition (config.classes), --spectral-norm."""
    discriminator = build_discriminator(config.arch, config.d_hidden)
    if config.classes:
        discriminator = projection_discriminator(discriminator, config.classes)
    return spectrally_normalised(discriminator) if config.spectral_norm else discriminator


def conditional_generator(body: keras.Sequential, noise_dim: int, num_classes: int):
    """[noise float32 (B, noise_dim), labels int32 (B,) in 0..num_classes-1] -> images float32
    (B, 28, 28, 1) in [-1, 1]: the label's learned embedding (LABEL_EMBEDDING numbers) joined
    to the noise, then the layers of `body`, an unconditional generator built for noise of
    noise_dim + LABEL_EMBEDDING numbers (so every architecture works unchanged; for dcgan the
    label reaches every pixel through the first Dense layer)."""
    noise = keras.Input((noise_dim,), name="noise")
    labels = keras.Input((), dtype="int32", name="label")
    embedded = _class_vectors(_one_hot(labels, num_classes), LABEL_EMBEDDING, GENERATOR_EMBEDDING)
    return keras.Model(
        [noise, labels],
        _apply(body.layers, layers.Concatenate()([noise, embedded])),
        name="generator",
    )


def conditional_bn_generator(body: keras.Sequential, num_classes: int):
    """[noise float32 (B, noise_dim), labels int32 (B,) in 0..num_classes-1] -> images float32
    (B, 28, 28, 1) in [-1, 1]: the layers of `body`, an unconditional generator with
    BatchNormalization, each BatchNormalization made conditional (de Vries et al. 2017, the
    generator of Miyato & Koyama 2018): it normalises as before (same moving statistics) but
    without its own scale and shift, then multiplies each feature (a unit of a Dense layer, a
    channel of a convolution) by a learned scale of the label's class (starting at 1) and adds
    a learned shift of the class (starting at 0). The label thus reaches every layer with
    BatchNorm, and the noise enters alone."""
    noise = keras.Input(body.inputs[0].shape[1:], name="noise")
    labels = keras.Input((), dtype="int32", name="label")
    one_hot = _one_hot(labels, num_classes)  # once, for every layer's scale and shift
    hidden, count = noise, 0
    for layer in body.layers:
        if not isinstance(layer, layers.BatchNormalization):
            hidden = layer(hidden)
            continue
        count += 1
        plain = {**layer.get_config(), "center": False, "scale": False}
        hidden = layers.BatchNormalization.from_config(plain)(hidden)
        scale, shift = (
            _class_vectors(one_hot, hidden.shape[-1], name, start)
            for name, start in (
                (f"{GENERATOR_EMBEDDING}_scale_{count}", "ones"),
                (f"{GENERATOR_EMBEDDING}_shift_{count}", "zeros"),
            )
        )
        if len(hidden.shape) == 4:  # a vector per channel: (B, 1, 1, channels)
            scale, shift = (layers.Reshape((1, 1, -1))(vector) for vector in (scale, shift))
        hidden = layers.Add()([layers.Multiply()([hidden, scale]), shift])
    return keras.Model([noise, labels], hidden, name="generator")


def projection_discriminator(body: keras.Sequential, num_classes: int):
    """[images float32 (B, 28, 28, 1), labels int32 (B,)] -> logits float32 (B, 1): the
    projection discriminator of Miyato & Koyama (2018), logit = psi(phi(x)) + embed(y) . phi(x),
    where phi is every layer of the unconditional `body` but its last, psi its last (Dense 1),
    and embed(y) a learned vector per class of phi's width (num_classes x width weights).
    The label enters as an inner product with the features: the form D's optimal logit takes
    when the class posteriors are log-linear in phi(x) (the paper's derivation), instead of a
    one-hot concatenated to the input, which D must learn to use (see docs/training.md)."""
    images = keras.Input(IMAGE_SHAPE, name="image")
    labels = keras.Input((), dtype="int32", name="label")
    *phi, psi = body.layers
    features = _apply(phi, images)
    projection = _class_vectors(_one_hot(labels, num_classes), features.shape[-1], PROJECTION)
    inner = layers.Dot(axes=1)([projection, features])  # (B, 1)
    logits = layers.Add(dtype=OUTPUT_DTYPE)([psi(features), inner])
    return keras.Model([images, labels], logits, name="discriminator")


def generator_inputs(generator: keras.Model) -> tuple[int, int | None]:
    """(noise_dim, num_classes) of a generator of this module: num_classes is None for an
    unconditional one (whose only input is the noise). Raises ValueError for a network with
    other inputs."""
    shapes = [tuple(tensor.shape) for tensor in generator.inputs]
    if len(shapes) == 1 and len(shapes[0]) == 2:
        return shapes[0][1], None
    embeddings = [layer for layer in generator.layers if layer.name.startswith(GENERATOR_EMBEDDING)]
    classes = embeddings[0].kernel.shape[0] if embeddings else None
    if len(shapes) == 2 and len(shapes[0]) == 2 and len(shapes[1]) == 1 and classes:
        return shapes[0][1], classes
    raise ValueError(f"inputs {shapes} are neither noise nor (noise, label)")


def spectrally_normalised(model: keras.Model) -> keras.Model:
    """A new network like `model` (freshly initialised) whose Dense and Conv2D layers (a
    projection discriminator's projection too) are wrapped in keras.layers.SpectralNormalization:
    each training call does one power iteration and divides the kernel by its largest
    singular value, so each layer is about 1-Lipschitz. The wrapper keeps the layer's dtype
    policy (float32 logits stay float32)."""

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, (layers.Dense, layers.Conv2D)):
            return layers.SpectralNormalization(fresh, dtype=layer.dtype_policy)
        return fresh

    return keras.models.clone_model(model, clone_function=clone)


def with_labels(batch, labels):
    """A network's inputs: the batch alone for an unconditional network (labels None), else
    [batch, int32 labels] as the conditional networks take them, both as tensors (Keras
    refuses a list that mixes tensors and NumPy arrays)."""
    if labels is None:
        return batch
    return [keras.ops.convert_to_tensor(batch), keras.ops.convert_to_tensor(labels, "int32")]


def _one_hot(labels, num_classes: int):
    """int labels (B,) -> float (B, num_classes) one-hot, what _class_vectors looks up."""
    return layers.CategoryEncoding(num_classes, output_mode="one_hot")(labels)


def _class_vectors(one_hot, width: int, name: str, start="glorot_uniform"):
    """A learned vector of `width` numbers per class: the labels' one-hot (B, num_classes) ->
    (B, width), through a Dense layer without bias (named `name`, its kernel initialised by
    `start`), whose kernel rows are the classes' vectors: an embedding table. Not
    keras.layers.Embedding, whose gradient is an IndexedSlices: Keras' Adam (used under
    --strategy) squares its rows before adding those of repeated labels, which gets the second
    moment wrong; and --spectral-norm's keras.layers.SpectralNormalization casts a layer's
    output to its input's dtype, int here."""
    return layers.Dense(width, use_bias=False, kernel_initializer=start, name=name)(one_hot)


def _apply(stack, inputs):
    """`inputs` through each layer of `stack` in turn (a Sequential's layers, reused)."""
    for layer in stack:
        inputs = layer(inputs)
    return inputs


def _hidden(arch: str, hidden) -> tuple:
    """The builder's extra arguments: (hidden,) if given, () for the builder's default."""
    if hidden is None:
        return ()
    if arch not in MLP_HIDDEN:
        raise ValueError(f"--arch {arch} has fixed layers; hidden widths are for the MLPs only")
    return (tuple(hidden),)
