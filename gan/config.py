"""Every training option in one frozen dataclass.

The command line of `gan.train` is generated from the fields below, so each option has exactly
one default, one help text and one validity check. A run directory's `config.json` is
`Config.to_json()`. Importing this module does not import TensorFlow, so bad options are
reported instantly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import typing
from pathlib import Path

from gan.errors import UsageError

DATASETS = ("mnist", "fashion_mnist")
SOURCES = ("keras", "bundled")  # where --dataset's images come from: see gan.data.read_source
ARCHITECTURES = ("mlp", "mlp-bn", "dcgan")  # keys of gan.models.ARCHITECTURES (no TF import here)
# The architectures whose hidden layers --g-hidden and --d-hidden set, with their defaults:
# arch -> (generator's hidden widths, discriminator's hidden widths). dcgan's layers are fixed.
MLP_HIDDEN = {"mlp": ((256, 512), (256,)), "mlp-bn": ((256, 512, 1024), (512, 256))}
BATCHNORM_GENERATORS = ("mlp-bn", "dcgan")  # the generators with BatchNorm (--conditional-bn)
STRATEGIES = ("default", "mirrored", "multiworker")  # see gan.distribute.make_strategy
MIXED_PRECISIONS = ("float16", "bfloat16")
LOSSES = ("nonsaturating", "hinge")  # keys of gan.losses.LOSSES
LR_SCHEDULES = ("constant", "linear", "cosine")
AUGMENTATIONS = ("translation", "cutout")  # keys of gan.augment.AUGMENTATIONS

# Named, tested combinations of options (--preset NAME). A preset sets these options' values;
# flags given explicitly override them. "textbook" is the default configuration itself.
PRESETS = {
    "textbook": {},
    # experiments/results/quality: the upgraded MLP, the generator's moving average, a light R1
    # penalty, both networks conditioned on 50 k-means clusters of the images (no labels
    # needed), 300 epochs. (Shifting D's images, --augment translation, scored worse there.)
    "best": {
        "arch": "mlp-bn",
        "ema": 0.999,
        "r1": 1.0,
        "self_condition": 50,
        "epochs": 300,
    },
}


# Options added after runs had been written, with the value every run written before had: a
# config.json without them is from then (e.g. an unconditional run), so they are filled in.
# No other option is ever filled in with its default.
# (checkpoint_interval: a run from before saves by the --checkpoint-every it records.)
ADDED_LATER = {
    "conditional": False,
    "num_classes": None,
    "checkpoint_interval": 60.0,
    "conditional_bn": False,
    "self_condition": 0,
}

# Options a resumed run (--resume) may change: how long it trains, how often it writes, and where
# it lives. Every other option changes what the training steps compute, so it keeps its saved value.
CHANGEABLE_ON_RESUME = (
    "epochs",
    "checkpoint_interval",
    "checkpoint_every",
    "sample_every",
    "eval_every",  # scoring reads the generator only (tests/test_evaluate.py)
    "data",  # moved data: the checkpoint's SHA-256 of the images must match (gan.checkpoints)
    "steps_per_call",  # speed only: a run trains the same with any (tests/test_gan.py)
    "profile_steps",
    "logdir",
    "run",
)


def _positive(value):
    return None if value > 0 and math.isfinite(value) else "must be a number > 0"


def _fraction(value):
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _decay(value):
    return None if 0 <= value < 1 else "must be 0 (off) or in (0, 1), e.g. 0.999"


def _non_negative(value):
    return None if value >= 0 and math.isfinite(value) else "must be a number >= 0"


NO_AUGMENTATION = "none"  # --augment none: off, e.g. to drop a preset's augmentations
# The options whose default None means "off", with the value that turns them off on the
# command line (e.g. a preset's); Config stores that value as None.
OFF_VALUES = {"ema": 0, "augment": NO_AUGMENTATION}


def parse_augmentations(text: str) -> tuple[str, ...] | None:
    """'translation,cutout' -> ('translation', 'cutout'): known names, each once, in the
    order given; None if `text` is no such list."""
    names = tuple(text.replace(" ", "").split(","))
    ok = all(name in AUGMENTATIONS for name in names) and len(set(names)) == len(names)
    return names if ok else None


def _augmentations(value):
    if value != NO_AUGMENTATION and parse_augmentations(value) is None:
        return (
            f"must be one or more of {', '.join(AUGMENTATIONS)}, separated by commas, "
            f"or {NO_AUGMENTATION}"
        )
    return None


NAME_MAX = 255  # bytes in a file name, on the file systems Linux uses


def _run_name(value):
    ok = re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._-]*", value) and value not in (".", "..")
    if not ok:
        return "must be a plain name of letters, digits, '.', '_' and '-', not starting with '-'"
    return None if len(value) <= NAME_MAX else f"must be at most {NAME_MAX} characters"


def _path(value):
    return None if value else "must not be empty"


SEED_MAX = 2**32 - 1  # NumPy's and TensorFlow's seeds are unsigned 32-bit integers


def _seed(value):
    return None if 0 <= value <= SEED_MAX else f"must be in 0..{SEED_MAX}"


MAX_CLASSES = 256  # labels are uint8 everywhere (idx label files, .npz, gan.generate)


def _class_count(value):
    return None if 2 <= value <= MAX_CLASSES else f"must be in 2..{MAX_CLASSES}"


def _cluster_count(value):
    return None if value == 0 or 2 <= value <= MAX_CLASSES else f"must be 0 or in 2..{MAX_CLASSES}"


def parse_step_range(text: str) -> tuple[int, int] | None:
    """'A,B' -> (A, B) for whole numbers 1 <= A <= B; None if `text` is no such range."""
    match = re.fullmatch(r"(\d+),(\d+)", text.replace(" ", ""))
    if not match:
        return None
    first, last = int(match[1]), int(match[2])
    return (first, last) if 1 <= first <= last else None


def _step_range(value):
    if parse_step_range(value) is None:
        return "must be FIRST,LAST: two step numbers with 1 <= FIRST <= LAST"
    return None


def parse_widths(text: str) -> tuple[int, ...] | None:
    """'256,512,1024' -> (256, 512, 1024): one or more whole numbers >= 1; None if `text` is
    no such list. How --g-hidden and --d-hidden are read from the command line."""
    parts = text.replace(" ", "").split(",")
    if not all(re.fullmatch(r"\d+", part) for part in parts):
        return None
    widths = tuple(int(part) for part in parts)
    return widths if min(widths) >= 1 else None


def format_widths(widths: tuple[int, ...]) -> str:
    """(256, 512) -> '256,512', the form parse_widths reads."""
    return ",".join(map(str, widths))


WIDTHS_TEXT = "layer widths separated by commas, each a whole number >= 1, e.g. 256,512"


def _widths(value):
    if value and all(type(width) is int and width >= 1 for width in value):  # no bools
        return None
    return "must be one or more layer widths, each a whole number >= 1, e.g. (256, 512)"


def shown(value):
    """An option's value as the command line writes it: layer widths (256, 512) as '256,512',
    any other value as it is. For messages, tables and TensorBoard's HParams."""
    return format_widths(value) if isinstance(value, tuple) else value


def steps_per_epoch(image_count: int, batch_size: int) -> int:
    """Training steps in an epoch over `image_count` images in batches of `batch_size`: the
    last partial batch is dropped (gan.data.make_dataset). Config.steps_per_epoch for a
    config's batch size."""
    return image_count // batch_size


def _option(default, help, check=None, choices=None):
    return dataclasses.field(
        default=default, metadata={"help": help, "check": check, "choices": choices}
    )


@dataclasses.dataclass(frozen=True)
class Config:
    """All options of a training run. Construction validates every value (raises UsageError)."""

    epochs: int = _option(100, "passes over the training images", _positive)
    batch_size: int = _option(
        128, "images per training step; an epoch's last partial batch is dropped", _positive
    )
    arch: str = _option("mlp", "network architecture; mlp is the textbook's", choices=ARCHITECTURES)
    noise_dim: int = _option(128, "length of the generator's input noise vector", _positive)
    # Layer widths: tuples here, "256,512" on the command line, JSON lists in config.json.
    g_hidden: tuple[int, ...] | None = _option(
        None,
        "widths of the generator's hidden layers, input side first, e.g. 256,512,1024; for "
        "--arch mlp and mlp-bn (default: 256,512 for mlp, 256,512,1024 for mlp-bn)",
        _widths,
    )
    d_hidden: tuple[int, ...] | None = _option(
        None,
        "widths of the discriminator's hidden layers, input side first, e.g. 512,256; for "
        "--arch mlp and mlp-bn (default: 256 for mlp, 512,256 for mlp-bn)",
        _widths,
    )
    conditional: bool = _option(
        False,
        "class-conditional GAN: the generator takes (noise, label), the label as a learned "
        "embedding joined to the noise, and the discriminator is a projection discriminator "
        "(Miyato & Koyama 2018). The labels come with the images: keras.datasets, the bundled "
        "digits, the *-labels-idx1-ubyte file beside each idx image file, or y_train/y_test "
        "in an .npz (see docs/training.md)",
    )
    conditional_bn: bool = _option(
        False,
        "with --conditional and --arch mlp-bn or dcgan: the label enters the generator as "
        "conditional BatchNorm (a learned scale and shift per class in each BatchNorm layer) "
        "instead of an embedding joined to the noise",
    )
    num_classes: int | None = _option(
        None,
        "classes of a --conditional run, labels 0..N-1 (default: 1 + the largest label of the "
        "training images; config.json records it)",
        _class_count,
    )
    self_condition: int = _option(
        0,
        "self-conditioning (Liu et al. 2020): cluster the training images into K groups "
        "(k-means on their pixels, seeded: the same images give the same clusters) and train "
        "a conditional GAN on the cluster ids as its classes, so that no label is needed; the "
        "run keeps them in RUN/clusters.npz, and samples (grids, evaluations, gan.generate, "
        "gan.evaluate) draw each cluster at its share of the images. 0: off. An explicit "
        "--conditional (the images' own labels) replaces a preset's --self-condition",
        _cluster_count,
    )
    lr: float = _option(
        2e-4, "Adam learning rate of both optimizers, unless --g-lr or --d-lr is given", _positive
    )
    g_lr: float | None = _option(
        None,
        "the generator's learning rate, with --d-lr the two time-scale update rule (default: --lr)",
        _positive,
    )
    d_lr: float | None = _option(
        None, "the discriminator's learning rate (default: --lr)", _positive
    )
    lr_schedule: str = _option(
        "constant",
        "learning rates over the run: constant, or decaying to 0 at the last step of the "
        "last epoch, linearly or along a half cosine",
        choices=LR_SCHEDULES,
    )
    beta1: float = _option(0.5, "Adam beta_1 of both optimizers, in [0, 1)", _fraction)
    loss: str = _option(
        "nonsaturating",
        "adversarial loss on the discriminator's logits: nonsaturating (the textbook's binary "
        "cross-entropy; the generator maximises log D(G(z))) or hinge (D: relu(1 - D(x)) + "
        "relu(1 + D(G(z))); G: -D(G(z)))",
        choices=LOSSES,
    )
    r1: float = _option(
        0.0,
        "weight gamma of the R1 penalty gamma/2 * mean |grad_x D(x)|^2 on the real images, "
        "added to the discriminator's loss (Mescheder et al. 2018); 0: off",
        _non_negative,
    )
    spectral_norm: bool = _option(
        False,
        "wrap every Dense and Conv2D layer of the discriminator in "
        "keras.layers.SpectralNormalization (one power iteration per training call)",
    )
    augment: str | None = _option(
        None,
        "DiffAugment (Zhao et al. 2020): augmentations from translation (shift by up to 4 px) "
        "and cutout (a 14x14 square set to 0), comma-separated, applied alike to real and "
        "generated images whenever the discriminator sees them, in both updates; none: off",
        _augmentations,
    )
    ema: float | None = _option(
        None,
        "keep an exponential moving average of the generator's variables with this decay per "
        "step (e.g. 0.999); sample grids, generator.keras, evaluations and gan.generate then "
        "use the average (the trained generator is saved as generator_raw.keras); 0: off",
        _decay,
    )
    preset: str | None = _option(
        None,
        f"a named, tested combination of options: {', '.join(PRESETS)} (gan.config.PRESETS; "
        "textbook is the default configuration); flags given with it override its values",
        choices=tuple(PRESETS),
    )
    dataset: str = _option(
        "mnist",
        "which images: from --source unless --data is given; also names the data set for "
        "evaluation",
        choices=DATASETS,
    )
    source: str | None = _option(
        None,
        "where --dataset's images come from: keras (keras.datasets, from its cache or "
        "downloaded: 70,000 images) or bundled (the official MNIST test set shipped with the "
        "package: 10,000 digits, mnist only). Default: keras, or bundled for mnist when "
        "keras.datasets cannot be had (offline; said on stderr). config.json records which",
        choices=SOURCES,
    )
    data: str | None = _option(
        None,
        "train on local files instead of downloading: a directory (every idx image file in "
        "it, .gz or raw; label files are skipped), one idx file, or an .npz laid out like "
        "keras' mnist.npz",
        _path,
    )
    limit: int | None = _option(None, "use only the first N images (quick runs)", _positive)
    logdir: str = _option("logs", "directory that holds run directories", _path)
    run: str | None = _option(
        None,
        "run name (letters, digits, . _ -): outputs go to LOGDIR/RUN "
        "(default: the start time, YYYYmmdd-HHMMSS)",
        _run_name,
    )
    seed: int = _option(
        0, f"random seed of weights, noise, dropout and shuffling, 0..{SEED_MAX}", _seed
    )
    jit: bool | None = _option(
        None,
        "compile the training step with XLA (default: on with a GPU, off on a CPU, where "
        "XLA made the step slower; see docs/performance.md)",
    )
    steps_per_call: int = _option(
        32,
        "training steps per compiled call, to save round trips to Python; a run uses the "
        "largest divisor of its steps per epoch not above this, so no call spans two epochs",
        _positive,
    )
    strategy: str = _option(
        "default",
        "tf.distribute strategy: default (one device), mirrored (every GPU of this machine, "
        "else its CPU) or multiworker (several machines, each described by the TF_CONFIG "
        "environment variable; see docs/distributed.md). --batch-size is the global batch, "
        "split evenly over the replicas",
        choices=STRATEGIES,
    )
    mixed_precision: str | None = _option(
        None,
        "compute in float16 (with dynamic loss scaling) or bfloat16, keeping variables, "
        "logits, images and losses in float32 (default: float32 throughout)",
        choices=MIXED_PRECISIONS,
    )
    sample_every: int = _option(
        10,
        "save a 5x5 grid of samples (--conditional: 10x10, a row per class) every N epochs "
        "(and after the first and last)",
        _positive,
    )
    profile_steps: str | None = _option(
        None,
        "record a TensorFlow profiler trace of training steps FIRST,LAST (counted from 1 over "
        "the whole run, e.g. 5,10) for TensorBoard's profile tab",
        _step_range,
    )
    checkpoint_interval: float = _option(
        60.0,
        "save a checkpoint under LOGDIR/RUN/checkpoints/ at the end of the first epoch that "
        "ends this many seconds after the last save (and after the last epoch, and on Ctrl-C "
        "or SIGTERM): a kill loses at most that and one epoch. Saving by time keeps short "
        "epochs from paying for a checkpoint each (python -m experiments.epoch_overhead)",
        _positive,
    )
    checkpoint_every: int | None = _option(
        None,
        "save a checkpoint every N epochs instead of every --checkpoint-interval seconds",
        _positive,
    )
    deterministic: bool = _option(
        False,
        "make every TensorFlow op deterministic (tf.config.experimental.enable_op_determinism): "
        "the same seed then gives bitwise the same networks, also across a crash and --resume; "
        "turns XLA off (Keras does not combine the two) and may be slower",
    )
    eval_every: int | None = _option(
        None,
        "score the generator every N epochs and after the last, as python -m gan.evaluate "
        "does: a console line, TensorBoard scalars eval/* and eval_real/*, records in "
        "eval.json. The first use on a data set trains a small classifier on its labelled "
        "images and caches it in $GAN_CACHE_DIR (default: ~/.cache/gan/classifiers)",
        _positive,
    )

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and _is_optional(hints[field.name]):
                continue
            kind = _base_type(hints[field.name])
            if not _is_kind(value, kind):
                raise UsageError(f"{flag(field.name)} must be {_KIND_NAMES[kind]}, got {value!r}")
            choices = field.metadata["choices"]
            if choices and value not in choices:
                raise UsageError(
                    f"{flag(field.name)} must be one of {', '.join(choices)}, got {value!r}"
                )
            check = field.metadata["check"]
            problem = check(value) if check else None
            if problem:
                raise UsageError(f"{flag(field.name)} {problem}, got {value!r}")
        # An option turned off is stored as its default, so that it compares and saves equal
        # to one never given.
        for name, off in OFF_VALUES.items():
            if getattr(self, name) == off:
                object.__setattr__(self, name, None)
        widths = [flag(n) for n in ("g_hidden", "d_hidden") if getattr(self, n) is not None]
        if self.r1 and self.mixed_precision == "float16":
            raise UsageError(
                "--r1 needs the gradient of D's output with respect to its input, which "
                "--mixed-precision float16's loss scaling does not cover; use bfloat16"
            )
        if self.num_classes is not None and not self.conditional:
            raise UsageError("--num-classes is for --conditional runs only")
        if self.conditional and self.self_condition:
            raise UsageError(
                "--conditional trains on the images' labels, --self-condition on clusters "
                "instead: give one"
            )
        conditioned = self.conditional or self.self_condition
        if self.conditional_bn and not (conditioned and self.arch in BATCHNORM_GENERATORS):
            raise UsageError(
                "--conditional-bn is for --conditional or --self-condition runs of --arch "
                f"{' and '.join(BATCHNORM_GENERATORS)} (the generators with BatchNorm)"
            )
        if widths and self.arch not in MLP_HIDDEN:
            raise UsageError(
                f"--arch {self.arch} has fixed layers; {' and '.join(widths)} "
                f"{'is' if len(widths) == 1 else 'are'} for --arch {' and '.join(MLP_HIDDEN)} only"
            )

    def resolved(self, image_count: int, has_gpu: bool, class_count: int | None = None) -> Config:
        """This config with its automatic choices made, for training on `image_count` images:
        jit (XLA on GPUs only), steps_per_call (a divisor of the steps per epoch; 1 while
        profiling, so that the profiler sees every step on its own), the MLP
        architectures' hidden widths (their defaults, if not given: so that config.json and
        TensorBoard's HParams show every run's layers), and with --conditional num_classes.

        class_count: 1 + the largest label of the training images; needed by a conditional
        config without num_classes. Raises UsageError if the labels do not fit num_classes."""
        steps_per_epoch = self.steps_per_epoch(image_count)
        most = 1 if self.profile_steps else min(self.steps_per_call, steps_per_epoch)
        steps_per_call = max(d for d in range(1, most + 1) if steps_per_epoch % d == 0)
        jit = has_gpu if self.jit is None else self.jit
        g_hidden, d_hidden = MLP_HIDDEN.get(self.arch, (None, None))
        return self.replace(
            jit=jit,
            steps_per_call=steps_per_call,
            g_hidden=self.g_hidden or g_hidden,
            d_hidden=self.d_hidden or d_hidden,
            num_classes=self._resolved_classes(class_count),
        )

    def _resolved_classes(self, class_count: int | None) -> int | None:
        """num_classes resolved from the labels' class count (see resolved)."""
        if not self.conditional:
            return None
        if class_count is None:
            if self.num_classes is None:
                raise ValueError("a --conditional config resolves with its labels' class count")
            return self.num_classes
        if self.num_classes is not None and class_count > self.num_classes:
            raise UsageError(
                f"--num-classes {self.num_classes}: the training labels go up to "
                f"{class_count - 1}; drop --num-classes to take it from the labels"
            )
        if self.num_classes is None and class_count < 2:
            raise UsageError("--conditional needs at least 2 classes; every training label is 0")
        return self.num_classes or class_count

    def absolute(self) -> Config:
        """This config with --logdir and --data absolute and resolved (symlinks, '..' and a
        trailing '/' gone), so that its config.json means the same from any directory and
        equal paths compare equal."""
        return self.replace(
            logdir=str(Path(self.logdir).resolve()),
            data=None if self.data is None else str(Path(self.data).resolve()),
        )

    @classmethod
    def from_options(cls, **options) -> Config:
        """The config of the given options over the values of `options["preset"]` (if any)
        over the defaults; validated. Options given with --conditional (the images' labels)
        drop the preset's self_condition (clusters in their place)."""
        preset = PRESETS[options.get("preset") or "textbook"]
        if options.get("conditional"):
            preset = {k: v for k, v in preset.items() if k != "self_condition"}
        return cls(**{**preset, **options})

    def steps_per_epoch(self, image_count: int) -> int:
        """Training steps in an epoch over `image_count` images: the last partial batch is
        dropped."""
        return steps_per_epoch(image_count, self.batch_size)

    @property
    def classes(self) -> int | None:
        """The classes the networks are conditioned on: --conditional's resolved num_classes,
        --self-condition's clusters, or None (an unconditional GAN)."""
        return self.num_classes if self.conditional else (self.self_condition or None)

    @property
    def learning_rates(self) -> tuple[float, float]:
        """(generator's, discriminator's) initial learning rate: --g-lr and --d-lr, else --lr."""
        return (self.g_lr or self.lr, self.d_lr or self.lr)

    def replace(self, **changes) -> Config:
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def resumed_with(self, given: dict) -> Config:
        """This config (a run's saved one) updated with the options `given` on the command line
        of a --resume. Raises UsageError if a given option differs from its saved value and
        is not one of CHANGEABLE_ON_RESUME."""
        conflicts = [
            f"{flag(name)} {_as_given(name, value)} (saved: {_as_given(name, getattr(self, name))})"
            for name, value in given.items()
            if name not in CHANGEABLE_ON_RESUME and value != getattr(self, name)
        ]
        if self.lr_schedule != "constant" and given.get("epochs", self.epochs) != self.epochs:
            conflicts.append(
                f"--epochs {given['epochs']} (saved: {self.epochs}; the --lr-schedule "
                f"{self.lr_schedule} decays to 0 at the saved last epoch)"
            )
        if conflicts:
            changeable = ", ".join(map(flag, CHANGEABLE_ON_RESUME))
            raise UsageError(
                f"--resume: {', '.join(conflicts)} conflicting with the run's saved config; a "
                f"resumed run keeps its options except {changeable}: drop the conflicting "
                f"flags or start a new run"
            )
        return self.replace(**{k: v for k, v in given.items() if k in CHANGEABLE_ON_RESUME})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Config:
        """The Config that to_json wrote (layer widths are JSON lists there; the "256,512" of
        a config.json written before they were is read too). Raises ValueError for text that
        is not JSON, and UsageError for JSON that is not an object with exactly the options
        as keys (a missing one is never filled in with its default, except the options of
        ADDED_LATER) or has a bad value."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise UsageError(f"expected a JSON object of options, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UsageError(f"unknown options in config: {', '.join(unknown)}")
        values = {**ADDED_LATER, **values}
        missing = [name for name in names if name not in values]
        if missing:
            raise UsageError(f"options missing from config: {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        return cls(
            **{
                name: _widths_from_json(value) if _base_type(hints[name]) is tuple else value
                for name, value in values.items()
            }
        )

    # --- command line -------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds one flag per field. Flags not given stay absent from the parsed namespace
        (argparse.SUPPRESS), so `given_options` can tell an explicit flag from a default."""
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            kind = _base_type(hints[field.name])
            choices = field.metadata["choices"]
            help_text = field.metadata["help"]
            if field.default is not None:
                help_text += f" (default: {field.default})"
            if kind is bool:
                parser.add_argument(
                    flag(field.name),
                    action=argparse.BooleanOptionalAction,
                    default=argparse.SUPPRESS,
                    help=help_text,
                )
            else:
                parser.add_argument(
                    flag(field.name),
                    type=_parse_as(kind),
                    default=argparse.SUPPRESS,
                    metavar="{" + ",".join(choices) + "}" if choices else field.name.upper(),
                    help=help_text,
                )

    @classmethod
    def given_options(cls, namespace: argparse.Namespace) -> dict:
        """The Config fields that were given explicitly on the command line."""
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in vars(namespace).items() if k in names}


def _as_given(name: str, value):
    """An option's value as a command line gives it: an option turned off by its off value."""
    return OFF_VALUES[name] if value is None and name in OFF_VALUES else shown(value)


def flag(name: str) -> str:
    """The command-line flag of a Config field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


_KIND_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    tuple: "a tuple of layer widths",
}


def _is_kind(value, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int subclass, but True is not an epoch count
        return kind is bool
    return isinstance(value, kind) or (kind is float and isinstance(value, int))


def _is_optional(hint) -> bool:
    return type(None) in typing.get_args(hint)


def _base_type(hint) -> type:
    """A field's type without None: int for `int | None`, tuple for `tuple[int, ...]`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if args else hint
    return typing.get_origin(kind) or kind


def _widths_from_json(value):
    """Layer widths as config.json holds them, as a tuple: a list [256, 512], or the string
    "256,512" of a config.json written before widths were tuples (e.g. a run to --resume).
    Anything else comes back as it is, for Config to refuse."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str):
        return parse_widths(value) or value
    return value


def _parse_as(kind: type):
    def parse(text: str):
        if kind is tuple:  # layer widths, the only tuples: "256,512" -> (256, 512)
            widths = parse_widths(text)
            if widths is None:
                raise argparse.ArgumentTypeError(f"must be {WIDTHS_TEXT}, got {text!r}")
            return widths
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {_KIND_NAMES[kind]}, got {text!r}"
            ) from None

    return parse
