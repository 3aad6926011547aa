"""How generated images are scored against real ones: the library that gan.evaluate (the
command line), training's --eval-every and the experiments share.

The real data set is split into two fixed halves (a seeded permutation). A small
CNN classifier (gan.classifier) is trained on the *reference* half, or loaded from its cache;
the same half gives the reference feature statistics. Samples are then scored by

    frechet_distance   between the classifier's penultimate features of the samples and of
                       the reference half (lower is better; the FID with our classifier)
    classifier_score   exp(mean KL(p(y|x) || p(y))) (higher is better, at most 10)
    classes_covered    classes that get >= 1 % of the samples by the classifier's vote (of 10)
    class_kl           KL(class histogram || uniform) in nats (0: balanced; log 10: one class)

and the *held-out* half, which the classifier has not seen either, is scored the same way: the
real-data floor each number should be read against. It also measures the classifier's accuracy.

Samples of a conditional generator come with the class each was generated for (gan.generate:
every class in turn); they are also scored by

    label_accuracy     the fraction of samples the classifier assigns to their label, overall
                       and per class; its real floor is the classifier's accuracy on the
                       held-out half (with their true labels)
    class_frechet_distance   per class c: the Fréchet distance between the samples of class c
                       and the reference images of class c (and its mean over the classes),
                       next to the held-out images of class c against the same reference

Python API (for experiment scripts and training): `Evaluator(images, labels)` or
`Evaluator.for_dataset(dataset, data)` once, then `evaluator.evaluate(samples)` for each set of
uint8 samples; or `evaluate(samples, images, labels)` in one call.
"""

from __future__ import annotations

import numpy as np

from gan import data
from gan.errors import UsageError
from gan.tables import markdown_table

SPLIT_SEED = 0
SCORES = ("frechet_distance", "classifier_score", "classes_covered", "class_kl")
CONDITIONAL_SCORES = ("label_accuracy", "mean_class_frechet_distance")  # with labels only


def split(count: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ascending) of the reference half and the held-out half of `count` real images,
    from a fixed permutation: every evaluation of a data set uses the same halves."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[: count // 2]), np.sort(order[count // 2 :])


class Evaluator:
    """Scores uint8 images (N, 28, 28) against one labelled real data set (see the module
    docstring for the protocol). Building it trains or loads the classifier; reuse it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, cache_dir=None, spec=None):
        """images: uint8 (N, 28, 28), the real data set; labels: (N,) classes 0-9.
        cache_dir: where classifiers are cached (default: gan.classifier.default_cache_dir()).
        spec: a gan.classifier.ClassifierSpec (default: the standard one)."""
        from gan import classifier
        from gan.metrics import feature_statistics

        labels = np.asarray(labels)
        if len(images) != len(labels) or len(images) < 4:
            raise data.DataError(f"need >= 4 labelled images, got {len(images)}/{len(labels)}")
        if labels.min() < 0 or labels.max() >= classifier.NUM_CLASSES:
            raise data.DataError(f"labels must be 0-{classifier.NUM_CLASSES - 1}")
        reference, held_out = split(len(images))
        self.classifier, self.classifier_info = classifier.load_or_train(
            images[reference], labels[reference], spec or classifier.ClassifierSpec(), cache_dir
        )
        features, _ = self.classifier.predict(images[reference])
        self.reference_statistics = feature_statistics(features)
        self._reference = features, labels[reference]  # for the per-class statistics
        self._class_statistics = None
        self.held_out_images, self.held_out_labels = images[held_out], labels[held_out]
        self.real_data = {"images": len(images)}  # which real images, for the records
        self._real = self._real_labelled = None

    @classmethod
    def for_dataset(
        cls, dataset: str, data_path=None, limit=None, source=None, **kwargs
    ) -> Evaluator:
        """The Evaluator of a data set as gan.train loads it (--dataset, --data, --limit,
        --source)."""
        try:
            labelled = data.load_labelled(dataset, data_path, limit, source)
        except data.LabelError as error:
            raise data.LabelError(f"evaluation needs labelled real images: {error}") from None
        evaluator = cls(*labelled, **kwargs)
        evaluator.real_data = {
            "dataset": dataset,
            "data": data_path,
            "source": source,
            "limit": limit,
            **evaluator.real_data,
        }
        return evaluator

    @property
    def held_out_count(self) -> int:
        return len(self.held_out_images)

    def score(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
        """{"n", "frechet_distance", "classifier_score", "classes_covered", "class_kl",
        "class_histogram" (10 fractions)} of uint8 images (N >= 2, 28, 28). With labels, the
        class each image was generated for ((N,) in 0-9), also the conditional scores
        {"label_accuracy", "label_accuracy_per_class", "class_frechet_distance" (10 each,
        None for a class with too few images), "mean_class_frechet_distance"}."""
        features, probabilities = self.classifier.predict(images)
        scores = self._score(features, probabilities)
        if labels is not None:
            scores.update(self._conditional(features, probabilities, labels))
        return scores

    def real_scores(self, labelled: bool = False) -> dict:
        """score() of the held-out real images (the floor), plus "classifier_accuracy" on
        them; labelled: also the conditional scores, with their true labels. Computed once."""
        if self._real is None:
            features, probabilities = self._held_out = self.classifier.predict(self.held_out_images)
            accuracy = np.mean(probabilities.argmax(axis=1) == self.held_out_labels)
            self._real = {
                **self._score(features, probabilities),
                "classifier_accuracy": float(accuracy),
            }
        if labelled and self._real_labelled is None:
            conditional = self._conditional(*self._held_out, self.held_out_labels)
            self._real_labelled = {**self._real, **conditional}
        return self._real_labelled if labelled else self._real

    def _conditional(self, features, probabilities, labels) -> dict:
        from gan import classifier, metrics

        labels = np.asarray(labels)
        if labels.shape != (len(features),):
            raise UsageError(f"{len(features)} images but labels of shape {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= classifier.NUM_CLASSES):
            raise UsageError(
                f"labels must be the classifier's classes, 0-{classifier.NUM_CLASSES - 1}"
            )
        if self._class_statistics is None:
            self._class_statistics = metrics.class_statistics(
                *self._reference, classifier.NUM_CLASSES
            )
        distances = metrics.class_frechet_distances(features, labels, self._class_statistics)
        known = distances[~np.isnan(distances)]
        return {
            "label_accuracy": metrics.label_accuracy(probabilities, labels),
            "label_accuracy_per_class": _rounded(metrics.per_class_accuracy(probabilities, labels)),
            "class_frechet_distance": _rounded(distances),
            "mean_class_frechet_distance": float(known.mean()) if len(known) else None,
        }

    def _score(self, features: np.ndarray, probabilities: np.ndarray) -> dict:
        from gan import metrics

        histogram = metrics.class_histogram(probabilities)
        return {
            "n": len(features),
            "frechet_distance": metrics.frechet_distance(
                *metrics.feature_statistics(features), *self.reference_statistics
            ),
            "classifier_score": metrics.classifier_score(probabilities),
            "classes_covered": metrics.classes_covered(histogram),
            "class_kl": metrics.kl_to_uniform(histogram),
            "class_histogram": [round(float(h), 4) for h in histogram],
        }

    def evaluate(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
        """{"real_data": which real images, "generated": score(images, labels), "real":
        real_scores() (with labels: labelled), "classifier": where it is cached, whether it
        was just trained, and how long that took}. labels: the classes a conditional
        generator was asked for, (N,), or None."""
        return {
            "real_data": self.real_data,
            "generated": self.score(images, labels),
            "real": self.real_scores(labelled=labels is not None),
            "classifier": self.classifier_info,
        }


def evaluate(
    images: np.ndarray, real_images: np.ndarray, real_labels: np.ndarray, labels=None, **kwargs
):
    """Evaluator(real_images, real_labels, **kwargs).evaluate(images, labels), in one call."""
    return Evaluator(real_images, real_labels, **kwargs).evaluate(images, labels)


def _rounded(values: np.ndarray) -> list:
    """Floats for JSON, 4 decimals; None for NaN (a class without enough images)."""
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def class_rows(images: np.ndarray, votes: np.ndarray, per_class: int) -> np.ndarray:
    """uint8 (10 * per_class, 28, 28) for a grid with one row per class: row k holds the first
    `per_class` images (in sample order, not the most confident) voted class k, black where
    there are fewer."""
    rows = np.zeros((10, per_class, *images.shape[1:]), np.uint8)
    for label in range(10):
        chosen = images[votes == label][:per_class]
        rows[label, : len(chosen)] = chosen
    return rows.reshape(-1, *images.shape[1:])


# --- reporting -------------------------------------------------------------------------------


def format_table(result: dict, label: str) -> str:
    """Markdown of an evaluate() result: the scores of the samples and of the real floor, the
    share of each class by the classifier's vote, and the classifier's accuracy."""
    generated, real = result["generated"], result["real"]
    real_label = "real (held-out half of the real images)"
    header = [
        "images",
        "n",
        "Fréchet distance ↓",
        "classifier score ↑",
        "classes covered ↑",
        "KL(classes ‖ uniform) ↓",
    ]
    parts = [
        markdown_table(
            header,
            [_score_cells(label, generated), _score_cells(real_label, real)],
            numbers_from=1,
        ),
        markdown_table(
            ["% of images per class", *range(10)],
            [_histogram_cells(label, generated), _histogram_cells(real_label, real)],
            numbers_from=1,
        ),
    ]
    if "label_accuracy" in generated:
        parts += _conditional_tables(label, generated, real_label, real)
    classifier = result["classifier"]
    origin = "loaded from" if classifier["cached"] else "trained and saved to"
    parts.append(
        f"Classifier: {100 * real['classifier_accuracy']:.2f} % accurate on the "
        f"{real['n']} held-out real images; {origin} {classifier['path']}"
    )
    return "\n\n".join(parts)


# The conditional tables: title, first column, the overall score, the per-class scores, scale
# and decimals of the cells.
_CONDITIONAL_PARTS = (
    ("label accuracy (%) ↑", "all", "label_accuracy", "label_accuracy_per_class", 100, 1),
    (
        "Fréchet distance within class ↓",
        "mean",
        "mean_class_frechet_distance",
        "class_frechet_distance",
        1,
        2,
    ),
)


def _conditional_tables(label: str, generated: dict, real_label: str, real: dict) -> list[str]:
    """Markdown tables of the label accuracy (%) and of the Fréchet distance within each
    class, overall and per class, of the samples and of the real floor ("—" for a class
    without a score)."""
    classes = len(generated["label_accuracy_per_class"])
    tables = []
    for title, first, overall, per_class, scale, digits in _CONDITIONAL_PARTS:
        rows = []
        for name, scores in ((label, generated), (real_label, real)):
            values = [scores[overall], *scores[per_class]]
            rows.append([name, *("—" if v is None else f"{scale * v:.{digits}f}" for v in values)])
        tables.append(markdown_table([title, first, *range(classes)], rows, numbers_from=1))
    return tables


def _histogram_cells(label: str, scores: dict) -> list[str]:
    """A table row: the label, then each class's share of the images in %."""
    return [label, *(f"{100 * h:.1f}" for h in scores["class_histogram"])]


def _score_cells(label: str, scores: dict) -> list:
    """A table row: the label, the number of images and their scores."""
    return [
        label,
        scores["n"],
        f"{scores['frechet_distance']:.3f}",
        f"{scores['classifier_score']:.3f}",
        scores["classes_covered"],
        f"{scores['class_kl']:.4f}",
    ]


def format_line(result: dict) -> str:
    """One console line: each score with the real floor in parentheses."""
    generated, real = result["generated"], result["real"]
    line = (
        f"FD {generated['frechet_distance']:.3f} (real {real['frechet_distance']:.3f}) "
        f"score {generated['classifier_score']:.3f} (real {real['classifier_score']:.3f}) "
        f"classes {generated['classes_covered']} KL {generated['class_kl']:.4f} "
        f"(real {real['class_kl']:.4f})"
    )
    if "label_accuracy" in generated:
        line += (
            f" label accuracy {generated['label_accuracy']:.3f} (real {real['label_accuracy']:.3f})"
        )
    return line


def log_scalars(writer, result: dict, step: int) -> None:
    """TensorBoard scalars eval/<score> (the samples) and eval_real/<score> (the floor), for
    each of SCORES and, for a conditional generator's samples, CONDITIONAL_SCORES."""
    import tensorflow as tf

    with writer.as_default():
        for prefix, scores in (("eval", result["generated"]), ("eval_real", result["real"])):
            for name in SCORES + CONDITIONAL_SCORES:
                if scores.get(name) is not None:
                    tf.summary.scalar(f"{prefix}/{name}", float(scores[name]), step=step)
        tf.summary.scalar(
            "eval_real/classifier_accuracy", result["real"]["classifier_accuracy"], step=step
        )
    writer.flush()
