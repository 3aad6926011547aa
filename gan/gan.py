"""The GAN as a subclassed keras.Model whose train_step makes both adversarial updates.

Why not the textbook's `discriminator.trainable = False` + stacked model: Keras 3 reads
`trainable` when the train function runs, not when the model is compiled, so the "frozen"
discriminator also stops learning in its own step. Here each update differentiates with respect
to exactly one network's variables and applies the result with that network's own optimizer.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from gan import distribute
from gan.augment import diff_augment
from gan.config import parse_augmentations
from gan.losses import LOSSES, NonSaturating
from gan.models import discriminator_for, generator_for, with_labels
from gan.optimizers import FusedAdam


class GAN(keras.Model):
    """Generator + discriminator, trained by `fit` on batches of real images.

    generator: noise float32 (B, noise_dim) -> images float32 (B, 28, 28, 1) in [-1, 1].
    discriminator: images -> logits float32 (B, 1); > 0 means "real".
    Noise z ~ N(0, I) is drawn inside the compiled step from a SeedGenerator seeded by `seed`.

    Options of the step, each off by default (the textbook's step):
    augment: names of gan.augment's DiffAugment transformations, applied to every image batch
        the discriminator sees, real or fake, in both updates (own SeedGenerator, seed + 1).
    r1: weight gamma of the R1 penalty gamma/2 * mean_x |grad_x D(x)|^2 on the real batch (as D
        sees it, augmented), added to the discriminator's loss; 0: none.
    ema: decay of `ema_generator`, an exponential moving average of every variable of the
        generator -- weights and BatchNorm moving statistics alike -- updated after each
        generator update: ema = decay * ema + (1 - decay) * generator. It never feeds back
        into training. None: no average.
    `sampler` is the network to draw samples from: the average if there is one, else the
    generator.
    num_classes: None (the textbook's unconditional GAN), or a class-conditional GAN
        (--conditional) over labels 0..num_classes-1: the generator takes [noise, labels]
        and the discriminator [images, labels] (labels int32 (B,); gan.models), and `fit`
        gets batches (images, labels). Each step draws one fake label per image uniformly
        from the noise seed, after the noise, and both updates use them (they share G(z, y)).
        Without num_classes nothing is drawn, so the unconditional step is unchanged.

    Under a tf.distribute strategy (build the GAN inside its scope), a step on N replicas
    equals a step on one device on the same global batch, as in Keras' own train_step:
    a Keras loss divides each replica's mean over its share of the batch by N
    (keras.src.losses.loss.scale_loss_for_distribution), and Keras optimizers sum the
    replicas' gradients before applying them, so the update follows the global mean's
    gradient. The noise is the global batch's noise, each replica using its own rows. The
    dropout masks are each replica's own: build_gan folds the replica's id into every dropout
    seed (ReplicaSeedGenerator), so N replicas draw N different masks, not the same one N
    times; with one replica the seeds, and so the masks, are exactly those of a plain
    keras.layers.Dropout.
    """

    def __init__(
        self,
        generator,
        discriminator,
        noise_dim: int,
        seed: int | None = None,
        augment: tuple[str, ...] = (),
        r1: float = 0.0,
        ema: float | None = None,
        num_classes: int | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.generator = generator
        self.discriminator = discriminator
        self.noise_dim = noise_dim
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.augmentations = tuple(augment)
        if self.augmentations:  # created only when used: the textbook's variables stay as they were
            # each replica its own transformations, as each draws its own dropout masks
            self.augment_seed = ReplicaSeedGenerator(None if seed is None else seed + 1)
        self.r1 = r1
        self.ema = ema
        self.ema_generator = _copy(generator) if ema else None
        self.num_classes = num_classes
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")  # mean sigmoid(D(x))
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")  # mean sigmoid(D(G(z)))
        # Both networks arrive built and the GAN has no call() of its own (see also
        # _maybe_symbolic_build).
        self.built = True

    def compile(self, d_optimizer, g_optimizer, loss_fn=None, **kwargs):
        """loss_fn: an adversarial loss of gan.losses (default: NonSaturating, the textbook's
        binary cross-entropy), whose `discriminator(real_logits, fake_logits)` and
        `generator(fake_logits)` average over the batch: under a strategy with N replicas they
        must return the replica's mean / N, as Keras losses do. Optimizers may be
        keras.optimizers.LossScaleOptimizer (float16). Other keyword arguments (jit_compile,
        steps_per_execution) go to keras.Model.compile."""
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn or NonSaturating()
        # Create Adam's slot variables now: if the compiled step created them on its first
        # call, tf.function would have to trace that step a second time.
        d_optimizer.build(self.discriminator.trainable_variables)
        g_optimizer.build(self.generator.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: the networks are built with their Input layers and the optimizers
        in compile. Keras' TensorFlow trainer would otherwise, under a strategy, reduce the
        first batch over the replicas to build the model from it, which
        MultiWorkerMirroredStrategy cannot do for a conditional GAN's (images, labels) pair
        across workers (its reduce takes one tensor, not a pair). Without a strategy Keras
        skips it too."""

    @property
    def metrics(self):
        # Listed here so Keras resets them at the start of every epoch.
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]

    @property
    def sampler(self):
        """The network to draw samples from: the generator's moving average with --ema, else
        the generator."""
        return self.ema_generator or self.generator

    def sample_noise(self, batch_size):
        """float32 (batch_size, noise_dim) from N(0, I); advances the noise seed."""
        return keras.random.normal((batch_size, self.noise_dim), seed=self.noise_seed)

    def sample_labels(self, batch_size):
        """int32 (batch_size,) uniform over 0..num_classes-1 (conditional GANs only); advances
        the noise seed, so a checkpoint's seed state also continues the labels exactly."""
        return keras.random.randint(
            (batch_size,), 0, self.num_classes, seed=self.noise_seed, dtype="int32"
        )

    def train_step(self, data):
        """One discriminator update, then one generator update, on the same G(z).

        data: real images float32 (B, 28, 28, 1); for a conditional GAN (images, int32 (B,)
        labels). G(z) is computed once: the discriminator update leaves the generator
        unchanged, so recomputing it for the generator update would give the same tensor at
        twice the cost. It also makes the generator's BatchNorm moving statistics move
        exactly once per step. Both networks run in training mode in both updates (batch
        statistics, dropout on).
        """
        real_images, real_labels = data if self.num_classes else (data, None)
        batch_size = tf.shape(real_images)[0]
        noise = self._replica_share(self.sample_noise, batch_size)
        fake_labels = (
            self._replica_share(self.sample_labels, batch_size) if self.num_classes else None
        )
        with self._tape_on(self.generator) as g_tape:
            fake_images = self.generator(with_labels(noise, fake_labels), training=True)
        d_loss, real_logits, fake_logits = self.train_discriminator(
            real_images, fake_images, real_labels, fake_labels
        )
        g_loss = self._update_generator(g_tape, fake_images, fake_labels)
        if self.ema_generator is not None:
            self._update_average()

        self.d_loss_tracker.update_state(_replica_mean(d_loss))
        self.g_loss_tracker.update_state(_replica_mean(g_loss))
        self.d_real_tracker.update_state(tf.reduce_mean(tf.sigmoid(real_logits)))
        self.d_fake_tracker.update_state(tf.reduce_mean(tf.sigmoid(fake_logits)))
        return {m.name: m.result() for m in self.metrics}

    def _replica_share(self, draw, batch_size):
        """This replica's rows of a random draw (sample_noise, sample_labels) for the global
        batch. On one device, simply draw(batch_size). With N replicas, every replica draws
        the global batch's rows, as one device would, from the same mirrored seed, and keeps
        its own: replicas get different noise and labels, and the seed stays the same on all
        of them."""
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        if replicas == 1:
            return draw(batch_size)
        start = context.replica_id_in_sync_group * batch_size
        return draw(replicas * batch_size)[start : start + batch_size]

    def make_train_function(self, force=False):
        # Keras' own function fails under several replicas: see distribute.py.
        if self.distribute_strategy.num_replicas_in_sync == 1:
            return super().make_train_function(force)
        if self.train_function is None or force:
            self.train_function = distribute.replicated_train_function(self)
        return self.train_function

    def train_discriminator(self, real_images, fake_images, real_labels=None, fake_labels=None):
        """Updates only the discriminator: real -> label 1, fake -> label 0. A conditional
        GAN's discriminator sees each batch with its class labels (int32 (B,)): the real
        images' own, and those the fakes were generated for.

        d_loss is the mean of the two losses, as in the textbook (plus the R1 penalty, if on).
        Real and fake images go
        through D as separate batches, so a BatchNorm layer in D (none of gan.models has one)
        would never mix their statistics, and its moving statistics would move once for each.
        Returns (d_loss, real_logits, fake_logits); the logits are the ones the update was
        computed from.
        """
        with self._tape_on(self.discriminator) as tape:
            real_images = self._augment(real_images)
            if self.r1:
                real_logits, penalty = self._r1_penalty(real_images, real_labels)
            else:
                real_logits = self.discriminator(
                    with_labels(real_images, real_labels), training=True
                )
            fake_logits = self.discriminator(
                with_labels(self._augment(fake_images), fake_labels), training=True
            )
            d_loss = self.loss_fn.discriminator(real_logits, fake_logits)
            if self.r1:
                d_loss += penalty
        self._apply(tape, d_loss, self.discriminator, self.d_optimizer)
        return d_loss, real_logits, fake_logits

    def train_generator(self, noise, labels=None):
        """Updates only the generator, so that D labels G(noise) (conditional: G(noise,
        labels) as of class labels) real. Returns g_loss. The generator's BatchNorm moving
        statistics move once, the discriminator's not at all."""
        with self._tape_on(self.generator) as tape:
            fake_images = self.generator(with_labels(noise, labels), training=True)
        return self._update_generator(tape, fake_images, labels)

    def _update_generator(self, tape, fake_images, fake_labels=None):
        # Re-entering the tape that recorded fake_images = G(z) extends it through D, so the
        # gradient reaches the generator's weights without running G again.
        with tape:
            fake_logits = _call_keeping_statistics(
                self.discriminator, with_labels(self._augment(fake_images), fake_labels)
            )
            g_loss = self.loss_fn.generator(fake_logits)
        self._apply(tape, g_loss, self.generator, self.g_optimizer)
        return g_loss

    def _augment(self, images):
        if not self.augmentations:
            return images
        return diff_augment(images, self.augmentations, self.augment_seed)

    def _r1_penalty(self, real_images, real_labels=None):
        """(D's logits of the real batch, r1 / 2 * mean over the batch of |grad_x D(x)|^2);
        a conditional D sees each image with its label, and x is the image only.
        The inner tape watches the real batch only; the outer tape (D's update) differentiates
        the penalty again, with respect to D's weights. Under N replicas the penalty is
        divided by N, as Keras losses are, so the update follows the global batch's mean."""
        real_images = tf.convert_to_tensor(real_images)
        with tf.GradientTape() as input_tape:
            input_tape.watch(real_images)
            real_logits = self.discriminator(with_labels(real_images, real_labels), training=True)
            # Each logit depends on its own image only: the gradient of their sum is, row by
            # row, each logit's gradient with respect to its image.
            logit_sum = tf.reduce_sum(real_logits)
        gradients = input_tape.gradient(logit_sum, real_images)
        squared_norms = tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return real_logits, self.r1 / 2 * tf.reduce_mean(squared_norms) / replicas

    def _update_average(self):
        """ema_generator = ema * ema_generator + (1 - ema) * generator, variable by variable."""
        for average, variable in zip(
            self.ema_generator.variables, self.generator.variables, strict=True
        ):
            average.assign(self.ema * average + (1 - self.ema) * variable)

    @staticmethod
    @contextlib.contextmanager
    def _tape_on(model):
        """A recording tape that differentiates with respect to `model`'s variables only."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([variable.value for variable in model.trainable_variables])  # tf.Variables
            yield tape

    @staticmethod
    def _apply(tape, loss, model, optimizer):
        variables = model.trainable_variables
        with tape:
            # A LossScaleOptimizer multiplies the loss so that small float16 gradients do not
            # flush to zero (its apply() divides them back); other optimizers return it as is.
            loss = optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, variables)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            gradients = distribute.skip_together(gradients)
        optimizer.apply(gradients, variables)


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """The SeedGenerator of a dropout layer (build_gan gives one to each) and of --augment's
    transformations: under N > 1 replicas, `next()` folds the replica's id
    (replica_id_in_sync_group, 0..N-1 across every worker) into the seed it returns, so that
    each replica draws its own dropout masks and transforms its own images its own way. The state
    itself advances as in a plain SeedGenerator, the same on every replica, so it stays
    mirrored and a checkpoint holds one value. With one replica, or outside a replica
    context, `next()` is SeedGenerator's: a single-device run draws what it always did.

    The seed is cast to int32 as Keras casts any seed for TensorFlow's stateless ops
    (keras.src.backend.tensorflow.random._cast_seed), then hashed with the replica id by
    tf.random.experimental.stateless_fold_in; the result is int32, which Keras uses as is.
    Folding in by hashing, rather than by adding the id to the counter, keeps replica 1 from
    drawing the seeds replica 0 draws a few steps later."""

    def next(self, ordered=True):
        seed = super().next(ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        return tf.random.experimental.stateless_fold_in(seed, replica)


def fold_replica_into_dropout(network) -> None:
    """Makes every dropout layer of `network` (nested networks included) draw its seeds from a
    ReplicaSeedGenerator. The generator keeps its state variable and name: only the class of
    the object changes, so the variables, checkpoints and saved .keras files (which store
    Dropout's config, not its seed generator) stay as they were."""
    for layer in getattr(network, "layers", ()):
        fold_replica_into_dropout(layer)
        generator = getattr(layer, "seed_generator", None)  # None at rate 0
        if isinstance(layer, keras.layers.Dropout) and generator is not None:
            generator.__class__ = ReplicaSeedGenerator


def _replica_mean(loss):
    """The mean loss over this replica's share of the batch: undoes the 1/replicas scaling of
    Keras losses under a strategy (as Keras' own train_step does for its loss metric)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * replicas if replicas > 1 else loss


def _call_keeping_statistics(model, inputs):
    """model(inputs, training=True), except that the model's non-trainable weights (BatchNorm
    moving statistics) keep their values: the call normalises with the batch's statistics as
    in training, but a generator update must not change the discriminator's state. Random-number
    states (dropout's) advance as in a plain call, so a model without statistics trains
    bitwise as with a plain call -- which is what it gets: nothing to protect, no extra ops."""
    if not model.non_trainable_weights:
        return model(inputs, training=True)
    outputs, states = model.stateless_call(
        model.trainable_variables, model.non_trainable_variables, inputs, training=True
    )
    statistics = {id(weight) for weight in model.non_trainable_weights}  # no RNG states
    for variable, state in zip(model.non_trainable_variables, states, strict=True):
        if id(variable) not in statistics:
            variable.assign(state)
    return outputs


def build_gan(config, adam=FusedAdam, steps_per_epoch: int | None = None) -> GAN:
    """The compiled GAN a resolved gan.config.Config describes (see Config.resolved): its
    networks, two separate Adam optimizers (the textbook shares one; ours use TensorFlow's fused
    Adam kernel, gan.optimizers.FusedAdam; `adam` picks another class, e.g.
    keras.optimizers.Adam to compare) with config.learning_rates and config.lr_schedule, the
    adversarial loss config.loss on logits, the step's options (--augment, --r1, --ema), XLA if
    config.jit, config.steps_per_call steps per compiled call, and config.mixed_precision.
    steps_per_epoch: needed by a decaying --lr-schedule, which reaches 0 after config.epochs
    epochs. --conditional needs config.num_classes resolved (Config.resolved with the
    labels' class count); --self-condition trains the same conditional GAN on its clusters.
    Call it inside a tf.distribute strategy's scope to train under that strategy; each
    replica then draws its own dropout masks (fold_replica_into_dropout)."""
    with _precision_policy(config.mixed_precision):
        generator = generator_for(config)
        discriminator = discriminator_for(config)
    model = GAN(
        generator,
        discriminator,
        noise_dim=config.noise_dim,
        seed=config.seed,
        augment=parse_augmentations(config.augment) if config.augment else (),
        r1=config.r1,
        ema=config.ema,
        num_classes=config.classes,
    )
    for network in (model.generator, model.discriminator, model.ema_generator):
        if network is not None:
            fold_replica_into_dropout(network)
    g_lr, d_lr = config.learning_rates
    model.compile(
        d_optimizer=_optimizer(config, adam, d_lr, steps_per_epoch),
        g_optimizer=_optimizer(config, adam, g_lr, steps_per_epoch),
        loss_fn=LOSSES[config.loss](),
        jit_compile=bool(config.jit),
        steps_per_execution=config.steps_per_call,
    )
    return model


def _optimizer(config, adam_class, learning_rate, steps_per_epoch):
    adam = adam_class(_schedule(config, learning_rate, steps_per_epoch), beta_1=config.beta1)
    # float16 overflows past 65504 and flushes below 6e-8: it needs dynamic loss scaling.
    # bfloat16 has float32's range and does not.
    return (
        keras.optimizers.LossScaleOptimizer(adam) if config.mixed_precision == "float16" else adam
    )


def _schedule(config, learning_rate: float, steps_per_epoch: int | None):
    """The learning rate of --lr-schedule: a float for constant, else a
    keras.optimizers.schedules object of the optimizer's step count (which checkpoints keep,
    so a resumed run continues the schedule), reaching 0 after config.epochs epochs."""
    if config.lr_schedule == "constant":
        return learning_rate
    if steps_per_epoch is None:
        raise ValueError(f"--lr-schedule {config.lr_schedule} needs the steps per epoch")
    steps = config.epochs * steps_per_epoch
    if config.lr_schedule == "linear":
        return keras.optimizers.schedules.PolynomialDecay(learning_rate, steps, 0.0, power=1.0)
    return keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.0)


def _copy(model):
    """A network of the same architecture holding a copy of `model`'s variables."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def _precision_policy(mixed_precision: str | None):
    """Layers built inside use Keras' mixed policy ("mixed_float16": float32 variables,
    float16 computation) if mixed_precision is set. The global policy is restored afterwards:
    each layer keeps the policy it was built with, and nothing built later is affected."""
    previous = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
