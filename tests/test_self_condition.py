"""experiments.self_condition: k-means clusters of the images, sampled at their shares, as a
conditional GAN's labels; one tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import self_condition
from experiments.self_condition import cluster_sequence, kmeans, purity


def _three_kinds(per_kind: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (3 * per_kind, 28, 28) images of three kinds (a square top left, a square bottom
    right, black), each with faint noise, in a shuffled order; and the kind of each."""
    rng = np.random.default_rng(1)
    kinds = rng.permutation(np.repeat(np.arange(3), per_kind))
    images = rng.integers(0, 20, size=(len(kinds), 28, 28)).astype(np.uint8)
    images[kinds == 0, 2:12, 2:12] = 255
    images[kinds == 1, 16:26, 16:26] = 255
    return images, kinds


def test_kmeans_finds_well_separated_kinds_and_is_seeded():
    images, kinds = _three_kinds(40)
    clusters = kmeans(images, 3)
    assert clusters.shape == (120,) and set(clusters) == {0, 1, 2}
    # each cluster is exactly one kind
    assert purity(clusters, kinds) == 1.0
    np.testing.assert_array_equal(kmeans(images, 3), clusters)


def test_purity_by_hand():
    clusters = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([5, 5, 2, 3, 3, 3])
    assert purity(clusters, labels) == pytest.approx(5 / 6)


def test_cluster_sequence_draws_each_cluster_at_its_share():
    clusters = np.array([0] * 50 + [1] * 30 + [2] * 20)
    sequence = cluster_sequence(clusters, 10)
    assert np.bincount(sequence).tolist() == [5, 3, 2]
    uneven = cluster_sequence(np.array([0, 0, 1]), 100)  # shares 66.7 and 33.3
    assert len(uneven) == 100 and np.bincount(uneven).tolist() == [67, 33]
    long = cluster_sequence(clusters, 1000)
    assert not np.array_equal(long, np.sort(long))  # shuffled ...
    np.testing.assert_array_equal(cluster_sequence(clusters, 1000), long)  # ... by a seed


def test_a_tiny_run_trains_scores_and_keeps_finished_runs(tmp_path, data_dir, monkeypatch):
    from gan.classifier import ClassifierSpec

    argv = ["--clusters", "3", "--seeds", "0", "1", "--epochs", "1", "--data", str(data_dir)]
    argv += ["--logdir", str(tmp_path / "logs"), "--out", str(tmp_path / "out")]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    args = self_condition._parser().parse_args(argv)
    spec = ClassifierSpec(epochs=1)
    text = self_condition.run(args, "command", spec=spec)

    clusters = np.load(tmp_path / "logs" / "clusters-3.npz")
    assert clusters["images"].shape == (300, 28, 28) and set(clusters["labels"]) == {0, 1, 2}
    for name in ("k3-seed0", "k3-seed1"):
        assert (tmp_path / "logs" / name / "generator.keras").exists()
        assert (tmp_path / "out" / f"{name}.png").exists()
        assert f"| {name} |" in text
    assert "Mean ± sd over the 2 seeds" in text
    assert (tmp_path / "out" / "README.md").read_text() == text
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(record["runs"]) == {"k3-seed0", "k3-seed1"} and record["clusters"] == 3
    for scores in (*record["runs"].values(), record["real"]):
        assert scores["classes_covered"] >= 1 and 0 <= scores["sure"] <= 1
    assert 0 < record["purity"] <= 1

    # a second call trains nothing: the finished runs are kept
    monkeypatch.setattr(self_condition, "_train", pytest.fail)
    assert self_condition.run(args, "command", spec=spec) == text


def test_an_unfinished_run_is_refused_in_one_line(tmp_path, data_dir, capsys):
    (tmp_path / "logs" / "k3-seed0").mkdir(parents=True)
    error = _refusal(tmp_path, data_dir, capsys)
    assert "k3-seed0 is unfinished" in error and "--resume" in error


@pytest.mark.parametrize("flag,value", [("--clusters", "1"), ("--epochs", "0"), ("--seeds", "x")])
def test_bad_options_are_refused_before_any_work(flag, value, capsys):
    with pytest.raises(SystemExit) as exit:
        self_condition.main([flag, value])
    assert exit.value.code == 2
    assert flag in capsys.readouterr().err


def _refusal(tmp_path, data_dir, capsys, epochs="1") -> str:
    """main's one-line error for --clusters 3 --seeds 0 in tmp_path/logs (exit status 2)."""
    argv = ["--clusters", "3", "--seeds", "0", "--epochs", epochs, "--data", str(data_dir)]
    argv += ["--logdir", str(tmp_path / "logs"), "--out", str(tmp_path / "out")]
    assert self_condition.main(argv) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    return error


def test_a_damaged_clusters_file_is_refused(tmp_path, data_dir, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "clusters-3.npz").write_bytes(b"PK\x03\x04 cut short")
    assert "cannot read" in _refusal(tmp_path, data_dir, capsys)


def test_a_clusters_file_of_other_images_is_refused(tmp_path, data_dir, capsys, images):
    (tmp_path / "logs").mkdir()
    np.savez(tmp_path / "logs" / "clusters-3.npz", images=images[:10], labels=np.zeros(10))
    assert "holds other images than --data" in _refusal(tmp_path, data_dir, capsys)


def test_a_kept_run_of_other_epochs_is_refused(tmp_path, data_dir, capsys):
    from gan.config import Config
    from gan.rundir import write_config

    run = tmp_path / "logs" / "k3-seed0"
    run.mkdir(parents=True)
    write_config(run, Config(epochs=5))
    (run / "generator.keras").write_bytes(b"")
    error = _refusal(tmp_path, data_dir, capsys, epochs="7")
    assert "trained 5 epochs, not --epochs 7" in error
    assert not (tmp_path / "logs" / "clusters-3.npz").exists()  # refused before any work
