"""`python -m gan.evaluate` on tiny labelled data, --eval-every during training, and the
experiments that score runs (the protocol itself: tests/test_evaluation.py)."""

from __future__ import annotations

import errno
import json
import os

import keras
import numpy as np
import pytest
from conftest import (
    PROJECT_ROOT,
    assert_usage_error,
    eval_scalars,
    make_labelled_images,
    run_main,
    run_module,
    write_idx,
)
from PIL import Image

from gan import evaluate
from gan.classifier import CACHE_ENV
from gan.clusters import kmeans, sample_sequence
from gan.config import Config
from gan.evaluation import SCORES
from gan.models import build_generator, generator_inputs
from gan.sampling import generate, generate_with_labels
from gan.train import train


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One classifier cache for the command-line tests: the first trains, the rest load."""
    return tmp_path_factory.mktemp("cli-cache")


@pytest.fixture
def labelled_dir(tmp_path):
    """Real images with labels as the command line reads them: idx images + idx labels."""
    images, labels = make_labelled_images(300)
    directory = tmp_path / "real"
    directory.mkdir()
    write_idx(directory / "t10k-images-idx3-ubyte.gz", images)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", labels)
    return directory


def run_cli(*args, cache_dir, module="gan.evaluate", cwd=PROJECT_ROOT, new_process=False):
    """`python -m MODULE ARGS` with its classifier cache in cache_dir: in this process
    (conftest.run_main), or with new_process in a new one (run_module): for training, and
    where TensorFlow's start-up lines being held back is what is checked."""
    run = run_module if new_process else run_main
    return run(module, *args, cwd=cwd, env={CACHE_ENV: str(cache_dir)})


def train_cli(*args, cache_dir):
    """`python -m gan.train ARGS` in a new process, its classifier cache in cache_dir."""
    return run_cli(*args, cache_dir=cache_dir, module="gan.train", new_process=True)


def _run_dir(tmp_path, data_dir, epochs=7):
    """A finished run as gan.train leaves it (config.json, generator.keras), made directly."""
    run_dir = tmp_path / "logs" / "r"
    run_dir.mkdir(parents=True)
    config = Config(epochs=epochs, noise_dim=16, data=str(data_dir), run="r")
    (run_dir / "config.json").write_text(config.to_json())
    keras.utils.set_random_seed(1)
    build_generator("mlp", 16).save(run_dir / "generator.keras")
    return run_dir


def test_cli_scores_a_run_appends_eval_json_and_log_scalars(tmp_path, labelled_dir, cache_dir):
    run_dir = _run_dir(tmp_path, labelled_dir)
    # real data: the run's --data
    first = run_cli("--run", run_dir, cache_dir=cache_dir, new_process=True)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # TensorFlow's start-up lines are held back
    assert "| real (held-out half of the real images) | 150 |" in first.stdout
    assert "generator.keras (epoch 7) | 150 |" in first.stdout
    second = run_cli(
        *("--run", run_dir, "--n", 40, "--seed", 3, "--truncation", 0.5, "--class-grid"),
        cache_dir=cache_dir,
    )
    assert second.returncode == 0, second.stderr
    assert "loaded from" in second.stdout  # the classifier was cached by the first run
    assert "noise truncated to ±0.5" in second.stdout
    grids = [p.name for p in (run_dir / "generated").iterdir()]
    assert grids == ["class-grid-epoch7-seed3-trunc0.5.png"]

    records = json.loads((run_dir / "eval.json").read_text())
    assert [r["generated"]["n"] for r in records] == [150, 40]  # appended, nothing lost
    assert [r["seed"] for r in records] == [0, 3] and records[0]["epoch"] == 7
    assert [r["truncation"] for r in records] == [None, 0.5]
    assert records[0]["real"] == records[1]["real"]
    assert records[0]["real_data"]["data"] == str(labelled_dir)
    assert records[0]["samples"] == str(run_dir / "generator.keras")

    scalars = eval_scalars(run_dir)
    for name in SCORES:  # not of the truncated noise: the run's curves are of its own noise
        assert [step for step, _ in scalars[f"eval/{name}"]] == [7]
        assert scalars[f"eval/{name}"][0][1] == pytest.approx(records[0]["generated"][name])
        assert scalars[f"eval_real/{name}"][0][1] == pytest.approx(records[0]["real"][name])


def test_cli_scores_a_samples_file(tmp_path, labelled_dir, cache_dir):
    samples = tmp_path / "samples.npz"
    np.savez(samples, images=make_labelled_images(60, seed=4)[0])
    result = run_cli(
        *("--samples", samples, "--data", labelled_dir, "--json", tmp_path / "e.json"),
        *("--class-grid", tmp_path / "classes.png"),
        cache_dir=cache_dir,
    )
    assert result.returncode == 0, result.stderr
    grid = np.asarray(Image.open(tmp_path / "classes.png"))
    assert grid.shape == ((10 * 30 + 2) * 2, (10 * 30 + 2) * 2)
    assert f"| {samples} | 60 |" in result.stdout
    (record,) = json.loads((tmp_path / "e.json").read_text())
    assert record["samples"] == str(samples) and record["epoch"] is None
    assert record["generated"]["classes_covered"] == 10


def test_a_full_disk_while_writing_is_one_line_exit_1_and_eval_json_stays_as_it_was(
    tmp_path, labelled_dir, cache_dir, monkeypatch, capfd
):
    from gan import rundir

    run_dir = _run_dir(tmp_path, labelled_dir)
    (run_dir / "eval.json").write_text("[]\n")

    def no_space(path, content):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(rundir, "write_atomically", no_space)
    monkeypatch.setenv(CACHE_ENV, str(cache_dir))
    assert evaluate.main(["--run", str(run_dir), "--n", "20"]) == 1
    last = capfd.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(
        f"python -m gan.evaluate: error: the disk is full: could not write {run_dir / 'eval.json'}"
    )
    assert last.endswith("free some space, then run it again")
    assert (run_dir / "eval.json").read_text() == "[]\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samples", "s.npz", "--run", "r"], "give --samples or a generator"),
        (["--samples", "missing.npz"], "--samples missing.npz: no such file"),
        ([], "give exactly one of --run RUN_DIR and --generator FILE.keras"),
        (["--run", "nowhere"], "not a run directory"),
        (["--samples", "s.npz", "--n", "5"], "--n is for generating images; --samples scores"),
        (["--samples", "s.npz", "--truncation", "1"], "--truncation is for generating images"),
        (["--run", "r", "--truncation", "0"], "must be a finite number > 0, got 0"),
        (["--run", "r", "--truncation", "inf"], "must be a finite number > 0, got inf"),
        (["--samples", "s.npz", "--data", "UNLABELLED"], "no label file"),
        (["--samples", "s.npz", "--n", "1"], "must be >= 2"),
        (["--samples", "s.npz", "--dataset", "cifar"], "invalid choice"),
        (["--samples", "s.npz", "--class-grid", "s.npz"], "must end in .png"),
        (["--samples", "s.npz", "--class-grid"], "--class-grid needs a file name"),
        (["--samples", "s.npz", "--source", "bundled", "--data", "s.npz"], "drop one of them"),
        (["--samples", "s.npz", "--json", "dict.json"], "not a list of evaluation records"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, data_dir, args, message):
    np.savez(tmp_path / "s.npz", images=make_labelled_images(10)[0])
    (tmp_path / "dict.json").write_text('{"not": "a list"}')
    (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    args = [str(data_dir) if a == "UNLABELLED" else a for a in args]
    result = run_cli(*args, cache_dir=tmp_path / "c", cwd=tmp_path)
    assert_usage_error(result, message)
    assert not (tmp_path / "c").exists()  # no classifier trained for bad input


@pytest.mark.parametrize(
    "module, flags",
    [
        ("gan.evaluate", ["--run", "--generator", "--checkpoint", "--seed", "--samples", "--n"]),
        ("gan.evaluate", ["--dataset", "--source", "--data", "--limit", "--cache-dir", "--json"]),
        ("gan.evaluate", ["--class-grid", "--overwrite", "--verbose", "--truncation"]),
        ("gan.generate", ["--run", "--generator", "--checkpoint", "--seed", "--n", "--out"]),
        ("gan.generate", ["--png", "--rows", "--cols", "--scale", "--overwrite", "--verbose"]),
        ("gan.generate", ["--label", "--truncation"]),
        ("gan.train", ["--eval-every", "--num-classes"]),
    ],
)
def test_help_explains_every_flag(tmp_path, module, flags):
    result = run_cli("--help", cache_dir=tmp_path, module=module)
    assert result.returncode == 0
    for flag in flags:
        assert f"  {flag} " in result.stdout  # listed with its help text


# --- during training -------------------------------------------------------------------------


def test_eval_every_scores_during_training_and_on_resume_and_matches_gan_evaluate(
    tmp_path, labelled_dir, cache_dir
):
    where = ("--logdir", tmp_path / "logs", "--run", "e")
    first = train_cli(
        *("--epochs", 3, "--eval-every", 2, "--data", labelled_dir, "--batch-size", 32),
        *("--noise-dim", 16, "--no-jit", "--ema", 0.5, *where),
        cache_dir=cache_dir,
    )
    assert first.returncode == 0, first.stderr
    assert [line.split(":")[0] for line in first.stdout.splitlines() if "FD" in line] == [
        "Eval epoch 2",
        "Eval epoch 3",  # the last epoch, though not a multiple of 2
    ]
    # --eval-every may change on --resume.
    resumed = train_cli(
        "--epochs",
        4,
        "--eval-every",
        1,
        "--resume",
        *where,
        cache_dir=cache_dir,
    )
    assert resumed.returncode == 0, resumed.stderr
    run_dir = tmp_path / "logs" / "e"
    records = json.loads((run_dir / "eval.json").read_text())
    assert [(r["samples"], r["epoch"]) for r in records] == [("training", e) for e in (2, 3, 4)]
    scalars = eval_scalars(run_dir)
    assert [step for step, _ in scalars["eval/frechet_distance"]] == [2, 3, 4]

    # The last evaluation during training is what gan.evaluate reports for the saved generator,
    # with --ema the generator's average (the trained one is generator_raw.keras).
    assert (run_dir / "generator_raw.keras").exists()
    after = run_cli("--run", run_dir, cache_dir=cache_dir)
    assert after.returncode == 0, after.stderr
    final = json.loads((run_dir / "eval.json").read_text())[-1]
    assert final["epoch"] == 4 and final["samples"] == str(run_dir / "generator.keras")
    for name in SCORES:
        assert final["generated"][name] == pytest.approx(records[-1]["generated"][name])
    raw = run_cli("--generator", run_dir / "generator_raw.keras", cache_dir=cache_dir)
    assert raw.returncode == 0, raw.stderr
    # the trained generator scores otherwise than its average
    assert _score_cells(raw.stdout) != _score_cells(after.stdout)


def _score_cells(stdout: str) -> list[str]:
    """The generated images' scores in gan.evaluate's table (its row without its label)."""
    rows = [line for line in stdout.splitlines() if line.startswith("|")]
    scores = rows[2].split("|")[3:]  # after the header, the separator, the label and n
    assert len(scores) == 5 and all(cell.strip() for cell in scores[:-1]), rows[2]
    return scores


def test_eval_every_without_labels_is_a_one_line_error_before_anything_is_written(
    tmp_path, data_dir
):
    (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    result = train_cli(
        *("--eval-every", 1, "--data", data_dir, "--logdir", tmp_path / "logs"),
        cache_dir=tmp_path / "cache",
    )
    assert_usage_error(result, "--eval-every: ")
    assert "no label file t10k-labels-idx1-ubyte.gz" in result.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "cache").exists()


def test_a_conditional_run_is_scored_with_label_accuracy_in_training_and_by_gan_evaluate(
    tmp_path, labelled_dir, cache_dir
):
    where = ("--logdir", tmp_path / "logs", "--run", "c")
    trained = train_cli(
        *("--conditional", "--epochs", 2, "--eval-every", 1, "--data", labelled_dir),
        *("--batch-size", 32, "--noise-dim", 16, "--no-jit", *where),
        cache_dir=cache_dir,
    )
    assert trained.returncode == 0, trained.stderr
    assert "label accuracy" in trained.stdout.splitlines()[-2]  # "Eval epoch 2: ..."
    run_dir = tmp_path / "logs" / "c"
    records = json.loads((run_dir / "eval.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0 <= r["generated"]["label_accuracy"] <= 1 for r in records)
    assert records[0]["real"]["label_accuracy"] == records[0]["real"]["classifier_accuracy"]
    scalars = eval_scalars(run_dir)
    assert [step for step, _ in scalars["eval/label_accuracy"]] == [1, 2]

    # gan.evaluate draws the same samples (seed 0, every class in turn): the same scores.
    after = run_cli("--run", run_dir, cache_dir=cache_dir)
    assert after.returncode == 0, after.stderr
    assert "| label accuracy (%) ↑ | all |" in after.stdout
    final = json.loads((run_dir / "eval.json").read_text())[-1]
    for name in ("label_accuracy", "mean_class_frechet_distance"):
        assert final["generated"][name] == pytest.approx(records[-1]["generated"][name])

    # Samples written with their labels (gan.generate --out) are scored with them.
    generator = keras.models.load_model(run_dir / "generator.keras")
    images, labels = generate_with_labels(generator, 40, seed=1)
    np.savez(tmp_path / "s.npz", images=images, labels=labels)
    scored = run_cli("--samples", tmp_path / "s.npz", "--data", labelled_dir, cache_dir=cache_dir)
    assert scored.returncode == 0, scored.stderr
    assert f"| {tmp_path / 's.npz'} | " in scored.stdout and "label accuracy" in scored.stdout


def test_a_self_conditioned_run_draws_its_clusters_at_their_shares_and_is_scored_without(
    tmp_path, labelled_dir, cache_dir
):
    """--self-condition: trained on the k-means clusters of its images, kept in the run; its
    samples (the evaluations in training, gan.evaluate, gan.generate) draw each cluster at its
    share, and are scored as an unconditional generator's: clusters are not classes."""
    where = ("--logdir", tmp_path / "logs", "--run", "s")
    trained = train_cli(
        *("--self-condition", 4, "--epochs", 2, "--eval-every", 1, "--data", labelled_dir),
        *("--batch-size", 32, "--noise-dim", 16, "--no-jit", *where),
        cache_dir=cache_dir,
    )
    assert trained.returncode == 0, trained.stderr
    assert "label accuracy" not in trained.stdout
    run_dir = tmp_path / "logs" / "s"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["self_condition"], config["conditional"], config["num_classes"]) == (
        4,
        False,
        None,
    )
    ids = np.load(run_dir / "clusters.npz")["clusters"]
    np.testing.assert_array_equal(ids, kmeans(make_labelled_images(300)[0], 4))
    generator = keras.models.load_model(run_dir / "generator.keras")
    assert generator_inputs(generator) == (16, 4)
    records = json.loads((run_dir / "eval.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    assert "label_accuracy" not in records[-1]["generated"]

    # gan.evaluate draws the same samples (seed 0, the clusters at their shares): same scores
    after = run_cli("--run", run_dir, cache_dir=cache_dir)
    assert after.returncode == 0, after.stderr
    assert "label accuracy" not in after.stdout
    final = json.loads((run_dir / "eval.json").read_text())[-1]
    for name in SCORES:
        assert final["generated"][name] == pytest.approx(records[-1]["generated"][name])

    # gan.generate: the clusters at their shares, kept as 'clusters' (not scored as labels)
    generated = run_main("gan.generate", "--run", run_dir, "--n", 40, "--out", tmp_path / "g.npz")
    assert generated.returncode == 0, generated.stderr
    with np.load(tmp_path / "g.npz") as samples:
        assert set(samples) == {"images", "clusters"}
        np.testing.assert_array_equal(samples["clusters"], sample_sequence(ids, 4, 40))
        np.testing.assert_array_equal(
            samples["images"], generate(generator, 40, 0, labels=samples["clusters"])
        )
    one = run_main(
        "gan.generate", "--run", run_dir, "--n", 5, "--label", 3, "--out", tmp_path / "3.npz"
    )
    assert one.returncode == 0, one.stderr
    assert np.load(tmp_path / "3.npz")["clusters"].tolist() == [3] * 5

    (run_dir / "clusters.npz").write_bytes(b"PK\x03\x04 cut short")
    assert_usage_error(
        run_cli("--run", run_dir, cache_dir=cache_dir), "clusters.npz cannot be read"
    )
    resumed = run_cli(*where, "--resume", "--epochs", 3, cache_dir=cache_dir, module="gan.train")
    assert_usage_error(resumed, "clusters.npz cannot be read")


def test_evaluating_during_training_does_not_change_training(tmp_path, evaluator):
    images = make_labelled_images(64)[0]
    config = Config(epochs=2, batch_size=32, noise_dim=8, jit=False, sample_every=5)
    plain = train(config, tmp_path / "plain", images)
    evaluated = train(
        config.replace(eval_every=1), tmp_path / "evaluated", images, evaluator=evaluator
    )
    assert len(json.loads((tmp_path / "evaluated" / "eval.json").read_text())) == 2
    for network in ("generator", "discriminator"):
        for a, b in zip(
            getattr(plain, network).get_weights(),
            getattr(evaluated, network).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_classifier_seeds_experiment_scores_one_sample_set_under_each_seed(
    tmp_path, labelled_dir, cache_dir
):
    run_dir = _run_dir(tmp_path, labelled_dir)
    out = tmp_path / "seeds.md"
    result = run_cli(
        *("--run", run_dir, "--seeds", 0, 1, "--out", out),
        cache_dir=cache_dir,
        module="experiments.classifier_seeds",
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    del rows[1]  # the alignment row
    assert [row.split(" | ")[0] for row in rows] == [
        "| classifier seed",
        "| 0",
        "| 1",
        "| mean ± sd",
    ]
    accuracies = [float(row.split(" | ")[1]) for row in rows[1:3]]
    assert all(a >= 0.9 for a in accuracies)  # two real classifiers, each trained
    assert rows[1] != rows[2]  # ... with its own seed


def test_truncation_experiment_scores_each_run_at_each_bound(tmp_path, labelled_dir, cache_dir):
    run_dir = _run_dir(tmp_path, labelled_dir)
    out = tmp_path / "truncation.md"
    result = run_cli(
        *("--runs", run_dir, "--truncations", "none", 0.5, "--out", out),
        cache_dir=cache_dir,
        module="experiments.truncation",
        new_process=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ")]
    assert [row[1] for row in rows[2:]] == ["none", "0.5", ""]  # the last row: the real floor
    # The untruncated row is what gan.evaluate --run reports for the same generator.
    scored = run_cli("--run", run_dir, "--json", tmp_path / "e.json", cache_dir=cache_dir)
    assert scored.returncode == 0, scored.stderr
    record = json.loads((tmp_path / "e.json").read_text())[-1]
    assert rows[2][2] == f"{record['generated']['frechet_distance']:.2f}"
    assert rows[3][2] != rows[2][2]  # truncated noise, other images
    bad = run_cli(
        "--runs", tmp_path / "nowhere", cache_dir=cache_dir, module="experiments.truncation"
    )
    assert_usage_error(bad, "is not a run directory")
