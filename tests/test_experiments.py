"""The exercise scripts (experiments/) run end to end in --quick mode on tiny labelled data, write
their results, reuse finished runs and refuse to overwrite runs that do not match."""

from __future__ import annotations

import dataclasses
import importlib
import json
import types

import keras
import numpy as np
import pytest
from conftest import PROJECT_ROOT, run_module
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from experiments import report, sweep
from gan import rundir
from gan.config import flag, shown
from gan.errors import UsageError

SCRIPTS = ["depth", "noise_size", "upgraded", "fashion"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One classifier cache for the module: the quick classifier is trained once."""
    return tmp_path_factory.mktemp("classifiers")


def _quick(experiment, tmp_path, data_dir, cache_dir, *more) -> int:
    argv = ["--quick", "--data", str(data_dir), "--logdir", str(tmp_path / "logs")]
    argv += ["--out", str(tmp_path / "out"), "--cache-dir", str(cache_dir), *more]
    return sweep.main(experiment, argv)


def test_a_script_run_as_a_user_runs_it_prints_nothing_on_stderr(tmp_path, data_dir, cache_dir):
    """TensorFlow's C++ start-up lines (oneDNN, CUDA, absl) are held back, as by gan.train."""
    out, logs = tmp_path / "out", tmp_path / "logs"
    result = run_module(
        "experiments.depth", "--quick", "--data", data_dir, "--logdir", logs, "--out", out,
        "--cache-dir", cache_dir, "--only", "textbook",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "finished" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_writes_table_grids_curves_and_hparams(script, tmp_path, data_dir, cache_dir):
    experiment = importlib.import_module(f"experiments.{script}").EXPERIMENT
    assert experiment.name == script  # `python -m experiments.<name>` is its command

    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 0

    out = tmp_path / "out"
    record = json.loads((out / "results.json").read_text())
    assert list(record["runs"]) == list(experiment.runs)
    readme = (out / "README.md").read_text()
    for name, run in record["runs"].items():
        assert run["epochs"] == sweep.QUICK_OPTIONS["epochs"]
        assert run["steps"] == 2 * (sweep.QUICK_IMAGES // sweep.QUICK_OPTIONS["batch_size"])
        assert [point["epoch"] for point in run["curve"]] == [1, 2]
        assert run["generated"]["n"] == sweep.QUICK_IMAGES // 2  # the held-out half
        assert run["steps_per_second"] > 0 and run["wall_seconds"] > 0
        assert 0 <= run["generated"]["sure"] <= 1 and run["generated"]["mean_entropy"] >= 0
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        for option, value in experiment.runs[name].items():
            if option not in sweep.QUICK_OPTIONS:  # --quick trains every run 2 short epochs
                assert run["config"][option] == json.loads(json.dumps(value))  # tuples: lists
                assert f"| {shown(value)} |" in row  # layer widths as on the command line
        assert (out / f"{name}.png").stat().st_size > 0
        # Each run logged its options to the HParams plugin and the eval scores as scalars.
        events = event_accumulator.EventAccumulator(
            str(tmp_path / "logs" / f"{script}-quick" / name)
        )
        events.Reload()
        assert "_hparams_/session_start_info" in events.summary_metadata
        assert "eval/frechet_distance" in events.Tags()["tensors"]
    header = readme.splitlines()[2]  # the options that differ between runs are columns
    varying = {option for options in experiment.runs.values() for option in options}
    varying -= set(sweep.QUICK_OPTIONS)  # --quick trains every run alike
    assert all(f" {flag(option)} |" in header for option in varying), header
    assert "| real images (held-out half) |" in readme
    assert f"Made by `python -m experiments.{script} --quick" in readme
    assert (out / "curves.png").stat().st_size > 0


def test_a_rerun_reuses_finished_runs_and_refuses_runs_with_other_options(
    tmp_path, data_dir, cache_dir, capsys
):
    experiment = sweep.Experiment(
        name="tiny", title="Tiny", runs={"a": {"noise_dim": 4}, "b": {"noise_dim": 8}}
    )
    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 0
    first = (tmp_path / "out" / "results.json").read_text()
    capsys.readouterr()

    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 0
    assert "== tiny: training" not in capsys.readouterr().out  # nothing trained again
    assert (tmp_path / "out" / "results.json").read_text() == first

    # A run finished by `gan.train --resume` has no wall time of the script's: shown as "—".
    (tmp_path / "logs" / "tiny-quick" / "a" / "wall_time.json").unlink()
    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 0
    row = next(
        line
        for line in (tmp_path / "out" / "README.md").read_text().splitlines()
        if line.startswith("| a |")
    )
    assert row.endswith("| — |")

    changed = dataclasses.replace(experiment, runs={"a": {"noise_dim": 16}})
    assert _quick(changed, tmp_path, data_dir, cache_dir) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "tiny-quick/a was trained with other options: noise_dim 4 (here 16)" in error


def test_only_trains_the_named_runs_and_a_last_call_writes_the_results(
    tmp_path, data_dir, cache_dir, capsys
):
    experiment = sweep.Experiment(
        name="tiny", title="Tiny", runs={"a": {"noise_dim": 4}, "b": {"noise_dim": 8}}
    )
    assert _quick(experiment, tmp_path, data_dir, cache_dir, "--only", "b") == 0
    runs = tmp_path / "logs" / "tiny-quick"
    assert [p.name for p in runs.iterdir()] == ["b"] and not (tmp_path / "out").exists()
    assert "run again without --only" in capsys.readouterr().out
    assert _quick(experiment, tmp_path, data_dir, cache_dir, "--only", "c") == 2
    assert "--only: no run c in this experiment; its runs are a, b" in capsys.readouterr().err
    # --partial: the results of b alone, naming a; nothing trained
    assert _quick(experiment, tmp_path, data_dir, cache_dir, "--partial", "--only", "a") == 2
    assert "--partial trains nothing and --only writes no results" in capsys.readouterr().err
    assert _quick(experiment, tmp_path, data_dir, cache_dir, "--partial") == 0
    assert "== tiny: training" not in capsys.readouterr().out
    assert [p.name for p in runs.iterdir()] == ["b"]
    partial = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(partial["runs"]) == ["b"] and partial["untrained"] == ["a"]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "**Partial results: not trained yet: a.**" in readme and "| a |" not in readme
    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 0
    output = capsys.readouterr().out
    assert "training a" in output and "training b" not in output
    complete = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(complete["runs"]) == ["a", "b"] and complete["untrained"] == []
    assert "Partial results" not in (tmp_path / "out" / "README.md").read_text()


def test_partial_results_need_a_finished_run(tmp_path, data_dir, cache_dir, capsys):
    experiment = sweep.Experiment(name="tiny", title="Tiny", runs={"a": {}})
    assert _quick(experiment, tmp_path, data_dir, cache_dir, "--partial") == 2
    assert capsys.readouterr().err.endswith("--partial: no run of tiny has finished yet\n")
    assert not (tmp_path / "out").exists()


def test_an_unfinished_run_is_an_error_that_says_how_to_resume(
    tmp_path, data_dir, cache_dir, capsys
):
    experiment = sweep.Experiment(name="tiny", title="Tiny", runs={"a": {}, "b": {"noise_dim": 8}})
    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 0
    (tmp_path / "logs" / "tiny-quick" / "a" / "generator.keras").unlink()  # as after a kill
    assert _quick(experiment, tmp_path, data_dir, cache_dir) == 2
    assert "did not finish; continue it with `python -m gan.train" in capsys.readouterr().err
    # --partial leaves it out, and its page says how to resume it before training the rest
    assert _quick(experiment, tmp_path, data_dir, cache_dir, "--partial") == 0
    readme = (tmp_path / "out" / "README.md").read_text()
    resume = f"python -m gan.train --logdir {tmp_path / 'logs' / 'tiny-quick'} --run a --resume"
    assert f"{resume}   # a stopped run" in readme


def test_a_finished_run_whose_config_json_holds_widths_as_text_is_reused(tmp_path):
    """config.json files written before layer widths were tuples hold them as "256,512": the
    finished runs of experiments.depth still count as finished, and still differ from other
    widths."""
    from experiments import depth

    configs = sweep.run_configs(depth.EXPERIMENT, True, tmp_path / "data", tmp_path / "logs")
    config = configs["plus-1-layer"]
    run_dir = tmp_path / "logs" / "plus-1-layer"
    run_dir.mkdir(parents=True)
    (run_dir / rundir.GENERATOR).touch()
    (run_dir / rundir.EVALUATIONS).touch()
    values = json.loads(config.resolved(sweep.QUICK_IMAGES, has_gpu=False).to_json())
    values.update(g_hidden="256,512,1024", d_hidden="512,256")
    (run_dir / rundir.CONFIG).write_text(json.dumps(values))
    assert sweep._finished(config, sweep.QUICK_IMAGES)
    (run_dir / rundir.CONFIG).write_text(json.dumps({**values, "d_hidden": "512"}))
    with pytest.raises(UsageError, match=r"other options: d_hidden '512' \(here '512,256'\)"):
        sweep._finished(config, sweep.QUICK_IMAGES)


def test_confidence_is_the_mean_entropy_and_the_share_of_sure_predictions():
    probabilities = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.995, 0.005, 0.0]])
    classifier = types.SimpleNamespace(predict=lambda images: (None, probabilities))
    result = report.confidence(types.SimpleNamespace(classifier=classifier), np.zeros((3, 28, 28)))
    entropy = np.log(2) / 3 - (0.995 * np.log(0.995) + 0.005 * np.log(0.005)) / 3
    assert result["mean_entropy"] == pytest.approx(entropy)
    assert result["sure"] == pytest.approx(2 / 3)  # p > 0.99: the first and the last


def test_quality_experiment_runs_best_with_three_seeds_its_ablations_and_the_baselines(
    tmp_path, data_dir, cache_dir
):
    from experiments import quality
    from gan.config import PRESETS

    mnist = quality.EXPERIMENTS["mnist"]
    techniques = set(PRESETS["best"]) - {"epochs"}
    unclustered = quality.UNCLUSTERED
    assert unclustered == "best-without-self_condition" and "self_condition" in techniques
    seeds = ("", "-seed1", "-seed2")
    left_out = [f"{unclustered}-with-{name}" for name in quality.WITH]
    labelled = [f"best-with-{name}" for name in quality.LABELLED]
    assert set(mnist.runs) == {
        *(f"best{seed}" for seed in seeds),
        "mlp-bn",
        "textbook",
        *(f"best-without-{name}" for name in techniques),
        *(f"{name}{seed}" for name in (unclustered, *left_out, *labelled) for seed in seeds),
        *(f"{unclustered}-with-{name}" for name in quality.TRIED_ONCE),  # seed 0 only
    }
    without_clusters = {"preset": "best", "self_condition": 0}
    assert mnist.runs[f"{unclustered}-seed1"] == {**without_clusters, "seed": 1}
    for name, options in quality.TRIED_ONCE.items():
        assert mnist.runs[f"{unclustered}-with-{name}"] == {**without_clusters, **options}
        assert all(
            PRESETS["best"].get(k, getattr(quality.DEFAULTS, k)) != v for k, v in options.items()
        )
    for name, options in quality.WITH.items():
        assert not set(options) & techniques  # what best left out is not in it
        run = mnist.runs[f"{unclustered}-with-{name}-seed2"]
        assert run == {**without_clusters, **options, "seed": 2}
    # given the labels, best trains on them in place of its clusters
    assert mnist.runs["best-with-conditional"] == {"preset": "best", "conditional": True, "seed": 0}
    fashion = {"mlp-bn", "textbook", unclustered, *left_out, *labelled}  # one seed
    assert set(quality.EXPERIMENTS["fashion"].runs) == fashion | {
        *(f"best{seed}" for seed in seeds),
        *(f"best-without-{name}" for name in techniques),
    }
    assert quality.EXPERIMENTS["fashion"].repeats["best"] == tuple(f"best{s}" for s in seeds)
    # Trained quick: one run of each kind (two seeds of best for the mean ± sd), not all 14.
    wide = f"{unclustered}-with-wide"
    kinds = ("best", "best-seed2", "best-without-ema", wide, "textbook")
    reduced = dataclasses.replace(
        mnist,
        runs={name: mnist.runs[name] for name in kinds},
        repeats={"best": ("best", "best-seed2")},
    )
    assert _quick(reduced, tmp_path, data_dir, cache_dir) == 0

    out = tmp_path / "out"
    runs = json.loads((out / "results.json").read_text())["runs"]
    for name in ("best", "best-seed2"):
        assert runs[name]["config"]["preset"] == "best"
        assert all(
            runs[name]["config"][k] == v for k, v in PRESETS["best"].items() if k != "epochs"
        )
    assert runs["best-seed2"]["config"]["seed"] == 2
    assert runs["best-without-ema"]["config"]["ema"] is None
    assert runs[wide]["config"]["d_hidden"] == [1024, 512]
    assert runs[wide]["config"]["self_condition"] == 0
    assert (
        runs["textbook"]["config"]["preset"] is None and runs["textbook"]["config"]["ema"] is None
    )
    seconds = [point["train_seconds"] for point in runs["best"]["curve"]]
    assert 0 < seconds[0] < seconds[1]  # training wall time after epochs 1 and 2
    readme = (out / "README.md").read_text()
    assert "Mean ± standard deviation over seeds" in readme and "| best | 2 |" in readme
    assert "Made by `python -m experiments.quality --quick" in readme
    assert (out / "time.png").stat().st_size > 0 and (out / "best-seed2.png").stat().st_size > 0


def test_conditional_experiment_scores_label_accuracy_and_draws_a_row_per_class(
    tmp_path, data_dir, cache_dir
):
    from experiments import conditional
    from gan.config import PRESETS
    from gan.evaluation import class_rows
    from gan.images import make_grid
    from gan.sampling import generate_with_labels

    mnist, fashion = conditional.EXPERIMENTS["mnist"], conditional.EXPERIMENTS["fashion"]
    assert set(fashion.runs) == {"mlp-bn", "dcgan", "mlp-bn-best", "dcgan-best"}
    assert set(mnist.runs) == set(fashion.runs) | {"dcgan-cbn"}
    assert (fashion.dataset, fashion.label_accuracy_target, mnist.label_accuracy_target) == (
        "fashion_mnist",
        None,  # Fashion-MNIST: the label accuracy beside the classifier's, no target
        0.97,
    )
    assert _quick(mnist, tmp_path, data_dir, cache_dir) == 0

    out = tmp_path / "out"
    record = json.loads((out / "results.json").read_text())
    real = record["real"]
    assert real["label_accuracy"] == real["classifier_accuracy"]  # the floor
    # the labels take the place of best's clusters
    dropped = ("arch", "epochs", "self_condition")
    techniques = {k: v for k, v in PRESETS["best"].items() if k not in dropped}
    for name, run in record["runs"].items():
        config, generated = run["config"], run["generated"]
        assert config["conditional"] is True and config["num_classes"] == 10
        assert config["self_condition"] == 0
        assert config["arch"] == name.removesuffix("-best").removesuffix("-cbn")
        assert config["conditional_bn"] == name.endswith("-cbn")
        assert all((config[k] == v) == name.endswith("-best") for k, v in techniques.items())
        assert 0 <= generated["label_accuracy"] <= 1
        assert len(generated["label_accuracy_per_class"]) == 10
        assert [point["label_accuracy"] >= 0 for point in run["curve"]] == [True, True]
        # The grid: row k holds the first ten samples generated for class k.
        generator = keras.models.load_model(
            tmp_path / "logs" / "conditional/mnist-quick" / name / "generator.keras"
        )
        samples, labels = generate_with_labels(generator, generated["n"], seed=0)
        expected = make_grid(class_rows(samples, labels, 10), 10, 10, scale=report.GRID_SCALE)
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}.png")), expected)
    readme = (out / "README.md").read_text()
    assert "| label accuracy ↑ | Fréchet distance within class ↓ | target |" in readme
    assert "KL <= 0.01, label accuracy >= 97 %" in readme
    row = next(line for line in readme.splitlines() if line.startswith("| real images"))
    assert f"| {100 * real['classifier_accuracy']:.1f} % |" in row
    assert "of a run with a label accuracy, row k: the first 10 generated for class k" in readme
    assert "Made by `python -m experiments.conditional --quick" in readme


def test_a_script_of_several_data_sets_picks_one_and_refuses_out_in_one_line(capsys, monkeypatch):
    from experiments import conditional

    with pytest.raises(SystemExit) as exit_status:
        sweep.main_per_dataset(conditional.EXPERIMENTS, "conditional", ["--out", "x"])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "python -m experiments.conditional: error: --out is not supported" in error
    calls = []
    monkeypatch.setattr(sweep, "main", lambda *arguments: calls.append(arguments) or 0)
    argv = ["--data", "DIR", "--quick"]  # --data is main's, not short for --dataset
    assert sweep.main_per_dataset(conditional.EXPERIMENTS, "conditional", argv) == 0
    assert calls == [
        (conditional.EXPERIMENTS[name], argv, f"python -m experiments.conditional --dataset {name}")
        for name in ("mnist", "fashion")
    ]  # the command the results record names the data set
    calls.clear()
    sweep.main_per_dataset(conditional.EXPERIMENTS, "conditional", ["--dataset", "fashion"])
    assert calls == [
        (
            conditional.EXPERIMENTS["fashion"],
            [],
            "python -m experiments.conditional --dataset fashion",
        )
    ]


def test_a_run_without_a_whole_run_time_shows_a_dash_and_the_page_says_why():
    """A run finished by gan.train --resume has no wall_time.json (report.run_result)."""
    from experiments import conditional

    results = PROJECT_ROOT / "experiments/results/conditional/mnist/results.json"
    record = json.loads(results.read_text())
    runs = {name: {**run, "wall_seconds": 60.0} for name, run in record["runs"].items()}
    experiment = conditional.EXPERIMENTS["mnist"]
    assert "gan.train --resume)" not in report.format_report(experiment, runs, record["real"], "c")
    runs["dcgan"]["wall_seconds"] = None
    page = report.format_report(experiment, runs, record["real"], "c")
    assert next(row for row in page.splitlines() if row.startswith("| dcgan |")).endswith("| — |")
    assert "| 1 min 00 s |" in next(r for r in page.splitlines() if r.startswith("| dcgan-cbn |"))
    assert "(—: the run was stopped and finished by gan.train --resume)." in page


def test_the_quality_target_bounds_the_frechet_distance_and_a_repeated_runs_wall_time():
    """Issue 15's target: a run meets it only with a Fréchet distance <= 3 too; a repeated
    configuration on the means over its seeds, and only if its slowest seed took <= 20 min."""
    from experiments import quality

    results = PROJECT_ROOT / "experiments/results/quality/mnist/results.json"
    record = json.loads(results.read_text())
    real = record["real"]
    seeds = ("best", "best-seed1", "best-seed2")
    runs = {
        name: {
            **record["runs"][name],
            "generated": {**record["runs"][name]["generated"], "frechet_distance": fd},
            "wall_seconds": 600.0,
        }
        for name, fd in zip(seeds, (1.0, 2.0, 4.5), strict=True)  # mean 2.5
    }
    experiment = quality.EXPERIMENTS["mnist"]
    assert experiment.fd_target == 3.0 and experiment.wall_target == 1200

    def target_cells(page):
        """(each run's target cell, the repeated configuration's row)"""
        lines = page.splitlines()
        runs = {
            n: next(x for x in lines if x.startswith(f"| {n} | ") and "(23,400)" in x)
            for n in seeds
        }
        return {n: row.split(" | ")[-3] for n, row in runs.items()}, next(
            line for line in lines if line.startswith("| best | 3 |")
        )

    each, repeated = target_cells(report.format_report(experiment, runs, real, "c"))
    assert each == {"best": "met", "best-seed1": "met", "best-seed2": "not met"}  # FD 4.5 > 3
    assert "| 2.50 ± 1.80 |" in repeated and repeated.endswith("| 10 min 00 s | met |")
    runs["best-seed1"]["wall_seconds"] = 1201.0
    _, repeated = target_cells(report.format_report(experiment, runs, real, "c"))
    assert repeated.endswith("| 20 min 01 s | not met |")


def test_runs_scored_at_another_cadence_are_named_on_the_page():
    from experiments import conditional

    results = PROJECT_ROOT / "experiments/results/conditional/mnist/results.json"
    record = json.loads(results.read_text())
    runs = record["runs"]
    experiment = conditional.EXPERIMENTS["mnist"]
    assert all(r["config"]["eval_every"] == experiment.options["eval_every"] for r in runs.values())
    assert "except:" not in report.format_report(experiment, runs, record["real"], "c")
    runs["dcgan"]["config"] = {**runs["dcgan"]["config"], "eval_every": 25}
    page = report.format_report(experiment, runs, record["real"], "c")
    assert "scored every 10 epochs during training, except: dcgan every 25 epochs." in page
