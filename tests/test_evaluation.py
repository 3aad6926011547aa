"""The evaluation protocol (gan.evaluation) on tiny labelled data: the split, the scores of
real, noise and one-class images, the conditional scores and the reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import eval_scalars, make_labelled_images, quick_classifier

from gan import evaluation
from gan.errors import UsageError

SCORES = evaluation.SCORES


def test_split_is_fixed_disjoint_and_complete():
    reference, held_out = evaluation.split(101)
    assert len(reference) == 50 and len(held_out) == 51
    assert sorted(np.concatenate([reference, held_out])) == list(range(101))
    again = evaluation.split(101)
    np.testing.assert_array_equal(again[0], reference)
    np.testing.assert_array_equal(again[1], held_out)
    assert not np.array_equal(reference, np.arange(50))  # shuffled, not the first half


def test_real_held_out_images_are_the_floor(evaluator):
    real = evaluator.real_scores()
    assert real["n"] == 200 and real["classifier_accuracy"] >= 0.95
    assert real["classes_covered"] == 10 and real["class_kl"] < 0.02
    assert real["frechet_distance"] < 1


def test_noise_is_far_from_the_real_images(evaluator):
    noise = np.random.default_rng(0).integers(0, 256, (200, 28, 28), np.uint8)
    scores = evaluator.score(noise)
    assert scores["frechet_distance"] > 20 * evaluator.real_scores()["frechet_distance"]
    assert scores["classifier_score"] < evaluator.real_scores()["classifier_score"]


def test_a_single_class_covers_one_class_with_kl_log_10(evaluator):
    images, labels = make_labelled_images(300, seed=5)
    scores = evaluator.score(images[labels == 3])
    assert scores["classes_covered"] == 1
    assert scores["class_histogram"][3] == 1.0
    assert scores["class_kl"] == pytest.approx(math.log(10), abs=1e-9)
    assert scores["classifier_score"] == pytest.approx(1, abs=0.05)


def test_evaluate_in_one_call_matches_the_evaluator(evaluator, tmp_path):
    images, labels = make_labelled_images(400)
    samples = make_labelled_images(100, seed=9)[0]
    result = evaluation.evaluate(
        samples, images, labels, cache_dir=tmp_path, spec=quick_classifier()
    )
    assert set(result) == {"real_data", "generated", "real", "classifier"}
    assert result["generated"] == evaluator.score(samples)
    assert result["real"] == evaluator.real_scores()
    assert result["real_data"] == {"images": 400}


def test_table_shows_both_rows_and_the_classifier(evaluator):
    result = evaluator.evaluate(make_labelled_images(50, seed=3)[0])
    table = evaluation.format_table(result, "my samples")
    lines = table.splitlines()
    assert lines[0].startswith("| images | n | Fréchet distance")
    assert lines[2].startswith("| my samples | 50 | ")
    assert lines[3].startswith("| real (held-out half of the real images) | 200 | ")
    assert lines[7].startswith("| my samples | 10.0 | 10.0 | ")  # 5 images of each class
    assert "% accurate on the 200 held-out real images" in table


def test_class_rows_put_each_class_in_its_row_and_pad_with_black():
    images = np.arange(1, 8, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    votes = np.array([3, 1, 3, 3, 3, 0, 1])  # image i is filled with the value i + 1
    rows = evaluation.class_rows(images, votes, per_class=3).reshape(10, 3, 28, 28)[..., 0, 0]
    assert rows[3].tolist() == [1, 3, 4]  # the first three voted 3, in sample order
    assert rows[1].tolist() == [2, 7, 0] and rows[0].tolist() == [6, 0, 0]
    assert not rows[[2, 4, 5, 6, 7, 8, 9]].any()


def test_labels_outside_0_to_9_are_refused(tmp_path):
    images, labels = make_labelled_images(20)
    with pytest.raises(ValueError, match="labels must be 0-9"):
        evaluation.Evaluator(images, labels + 10, cache_dir=tmp_path, spec=quick_classifier())


def test_conditional_samples_are_scored_by_label_accuracy_and_within_each_class(evaluator):
    real = evaluator.real_scores(labelled=True)
    assert real["label_accuracy"] == real["classifier_accuracy"]  # the floor: true labels
    assert {k: real[k] for k in evaluator.real_scores()} == evaluator.real_scores()
    images, labels = make_labelled_images(300, seed=5)  # 30 of each class
    right, wrong = evaluator.score(images, labels), evaluator.score(images, (labels + 1) % 10)
    assert right["label_accuracy"] >= 0.95 and wrong["label_accuracy"] <= 0.05
    # Equal classes: the overall accuracy is the mean of the classes'.
    assert right["label_accuracy"] == pytest.approx(np.mean(right["label_accuracy_per_class"]))
    assert len(right["class_frechet_distance"]) == 10
    assert right["mean_class_frechet_distance"] == pytest.approx(  # of values rounded to 4
        np.mean(right["class_frechet_distance"]), abs=1e-4
    )
    # Real images of class c against the reference images of class c are near their floor;
    # labelled c + 1, they are compared with the wrong class.
    assert right["mean_class_frechet_distance"] < 3 * real["mean_class_frechet_distance"] + 1
    assert wrong["mean_class_frechet_distance"] > 10 * right["mean_class_frechet_distance"]
    plain = evaluator.score(images)
    assert {k: right[k] for k in plain} == plain  # the labels add scores, change none
    few = evaluator.score(images[:12], labels[:12])  # classes 2-9 have a single image
    assert few["class_frechet_distance"][2:] == [None] * 8
    assert few["mean_class_frechet_distance"] == pytest.approx(
        np.mean(few["class_frechet_distance"][:2]), abs=1e-4
    )


def test_labels_the_classifier_does_not_have_are_refused(evaluator):
    images = make_labelled_images(4)[0]
    with pytest.raises(UsageError, match="labels must be the classifier's classes, 0-9"):
        evaluator.evaluate(images, np.array([0, 1, 2, 10]))


def test_conditional_scores_in_the_table_the_console_line_and_tensorboard(evaluator, tmp_path):
    images, labels = make_labelled_images(50, seed=3)
    result = evaluator.evaluate(images, labels)
    lines = evaluation.format_table(result, "mine").splitlines()
    header = lines.index("| label accuracy (%) ↑ | all | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |")
    accuracy = result["generated"]["label_accuracy"]
    assert lines[header + 2].startswith(f"| mine | {100 * accuracy:.1f} | ")
    real = result["real"]["label_accuracy"]
    assert lines[header + 3].startswith(
        f"| real (held-out half of the real images) | {100 * real:.1f}"
    )
    assert any(line.startswith("| Fréchet distance within class ↓ | mean | 0 |") for line in lines)
    assert f"label accuracy {accuracy:.3f} (real {real:.3f})" in evaluation.format_line(result)

    writer = tf.summary.create_file_writer(str(tmp_path))
    evaluation.log_scalars(writer, result, step=3)
    writer.close()
    scalars = eval_scalars(tmp_path)
    assert scalars["eval/label_accuracy"] == [(3, pytest.approx(accuracy))]
    assert scalars["eval_real/label_accuracy"] == [(3, pytest.approx(real))]
    assert "eval/mean_class_frechet_distance" in scalars

    plain = evaluator.evaluate(images)  # unconditional samples: none of it
    assert "label accuracy" not in evaluation.format_table(plain, "mine")
    assert "label accuracy" not in evaluation.format_line(plain)
    assert "label_accuracy" not in plain["real"]
