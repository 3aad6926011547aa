"""experiments.self_condition: the best preset with each --self-condition K; one tiny
end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import self_condition
from experiments.self_condition import purity


def test_purity_by_hand():
    clusters = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([5, 5, 2, 3, 3, 3])
    assert purity(clusters, labels) == pytest.approx(5 / 6)


def test_a_tiny_run_trains_scores_and_keeps_finished_runs(tmp_path, data_dir, monkeypatch):
    from gan.classifier import ClassifierSpec

    argv = ["--clusters", "3", "4", "--epochs", "1", "--data", str(data_dir)]
    argv += ["--seeds", "0", "1"]
    argv += ["--logdir", str(tmp_path / "logs"), "--out", str(tmp_path / "out")]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    args = self_condition._parser().parse_args(argv)
    spec = ClassifierSpec(epochs=1)
    text = self_condition.run(args, "command", spec=spec)

    names = ("k3-seed0", "k3-seed1", "k4-seed0", "k4-seed1")
    for name in names:
        run = tmp_path / "logs" / name
        assert (run / "generator.keras").exists() and (run / "clusters.npz").exists()
        assert (tmp_path / "out" / f"{name}.png").exists()
        assert f"| {name} |" in text
    assert "K = 3, mean ± sd over 2 seeds" in text and "K = 4, mean ± sd over 2 seeds" in text
    assert (tmp_path / "out" / "README.md").read_text() == text
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(record["runs"]) == list(names)
    assert [g["clusters"] for g in record["runs"].values()] == [3, 3, 4, 4]
    for scores in (*record["runs"].values(), record["real"]):
        assert scores["classes_covered"] >= 1 and 0 <= scores["sure"] <= 1
    assert all(0 < g["purity"] <= 1 for g in record["runs"].values())

    # a second call trains nothing: the finished runs are kept
    monkeypatch.setattr(self_condition, "_train", pytest.fail)
    assert self_condition.run(args, "command", spec=spec) == text


def test_an_unfinished_run_is_refused_in_one_line(tmp_path, data_dir, capsys):
    (tmp_path / "logs" / "k3-seed0").mkdir(parents=True)
    error = _refusal(tmp_path, data_dir, capsys)
    assert "k3-seed0 is unfinished" in error and "--resume" in error


@pytest.mark.parametrize(
    "flag,value", [("--clusters", "1"), ("--clusters", "257"), ("--epochs", "0"), ("--seeds", "x")]
)
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


@pytest.mark.parametrize(
    "options,message",
    [
        ({"epochs": 5, "self_condition": 3}, "trained 5 epochs with --self-condition 3, not"),
        ({"epochs": 7, "self_condition": 4}, "trained 7 epochs with --self-condition 4, not"),
    ],
)
def test_a_kept_run_trained_otherwise_is_refused(tmp_path, data_dir, capsys, options, message):
    from gan.config import Config
    from gan.rundir import write_config

    run = tmp_path / "logs" / "k3-seed0"
    run.mkdir(parents=True)
    write_config(run, Config(**options))
    (run / "generator.keras").write_bytes(b"")
    assert message in _refusal(tmp_path, data_dir, capsys, epochs="7")
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "generator.keras"]
