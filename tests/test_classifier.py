"""The evaluation classifier: its network, seeded training, and the on-disk cache."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import make_labelled_images, quick_classifier

from gan import classifier
from gan.errors import UsageError

QUICK = quick_classifier()


@pytest.fixture(scope="module")
def labelled():
    return make_labelled_images(200)


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_network_shape_and_features_layer():
    model = classifier.build_network()
    assert model.count_params() == 225_034
    assert model.output_shape == (None, 10)
    assert model.get_layer(classifier.FEATURES_LAYER).output.shape == (None, 128)


def test_training_is_reproducible_and_leaves_global_random_state_alone(labelled):
    numpy_state, python_state = np.random.get_state(), random.getstate()
    first = classifier.train_network(*labelled, QUICK)
    assert random.getstate() == python_state
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )
    np.random.seed(123)  # whatever the caller's global seeds are, the result is the same
    second = classifier.train_network(*labelled, QUICK)
    for a, b in zip(_weights(first), _weights(second), strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = classifier.train_network(*labelled, classifier.ClassifierSpec(epochs=3, seed=1))
    assert not np.array_equal(_weights(first)[0], _weights(other_seed)[0])


def test_second_load_comes_from_the_cache(tmp_path, labelled, monkeypatch):
    images, labels = labelled
    model, info = classifier.load_or_train(images, labels, QUICK, cache_dir=tmp_path)
    assert info["cached"] is False and info["images"] == 200 and info["spec"]["epochs"] == 3
    key = classifier.cache_key(images, labels, QUICK)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{key}.json", f"{key}.keras"]
    assert json.loads((tmp_path / f"{key}.json").read_text())["spec"]["epochs"] == 3

    def no_training(*args):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr(classifier, "train_network", no_training)
    cached, info = classifier.load_or_train(images, labels, QUICK, cache_dir=tmp_path)
    assert info["cached"] is True and info["path"] == str(tmp_path / f"{key}.keras")
    features, probabilities = model.predict(images[:20])
    cached_features, cached_probabilities = cached.predict(images[:20])
    np.testing.assert_array_equal(features, cached_features)
    np.testing.assert_allclose(probabilities, cached_probabilities)


def test_predict_gives_features_and_probabilities(tmp_path, labelled):
    model, _ = classifier.load_or_train(*labelled, QUICK, cache_dir=tmp_path)
    features, probabilities = model.predict(labelled[0][:7])
    assert features.shape == (7, 128) and (features >= 0).all()  # ReLU outputs
    assert probabilities.shape == (7, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-9)


def test_an_unreadable_cache_entry_is_retrained(tmp_path, labelled):
    classifier.load_or_train(*labelled, QUICK, cache_dir=tmp_path)
    key = classifier.cache_key(*labelled, QUICK)
    (tmp_path / f"{key}.keras").write_bytes(b"garbage")
    _, info = classifier.load_or_train(*labelled, QUICK, cache_dir=tmp_path)
    assert info["cached"] is False
    _, info = classifier.load_or_train(*labelled, QUICK, cache_dir=tmp_path)
    assert info["cached"] is True


def test_cache_key_changes_with_images_labels_and_spec(labelled):
    images, labels = labelled
    key = classifier.cache_key(images, labels, QUICK)
    assert classifier.cache_key(images.copy(), labels.copy(), QUICK) == key  # content, not id
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    assert classifier.cache_key(changed, labels, QUICK) != key
    assert classifier.cache_key(images, np.roll(labels, 1), QUICK) != key
    assert classifier.cache_key(images, labels, classifier.ClassifierSpec(epochs=4)) != key
    assert classifier.cache_key(images[:100], labels[:100], QUICK) != key


def test_an_unwritable_cache_directory_is_a_config_error_before_training(tmp_path, labelled):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot create the classifier cache"):
        classifier.load_or_train(*labelled, QUICK, cache_dir=tmp_path / "file" / "cache")


def test_cache_directory_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(classifier.CACHE_ENV, str(tmp_path / "mine"))
    assert classifier.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(classifier.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert classifier.default_cache_dir() == tmp_path / "xdg" / "gan" / "classifiers"
