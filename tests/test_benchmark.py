"""The benchmark scripts answer --help without TensorFlow; the benchmark's peers train the same
networks as ours, and each one's step trains."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import PROJECT_ROOT

from experiments import peers
from gan.config import Config

# Runs a script's --help in this interpreter, then says whether TensorFlow got imported.
HELP_THEN_TENSORFLOW_IMPORTED = """
import runpy, sys
sys.argv = ["{module}", "--help"]
try:
    runpy.run_module("{module}", run_name="__main__")
except SystemExit:
    pass
print("tensorflow" in sys.modules)
"""


@pytest.mark.parametrize(
    "module",
    [
        "experiments.benchmark",
        "experiments.precision_benchmark",
        "experiments.epoch_overhead",
        "experiments.preset_time",
        "experiments.xla_flags",
        "experiments.step_costs",
    ],
)
def test_help_answers_before_tensorflow_is_imported(module):
    code = HELP_THEN_TENSORFLOW_IMPORTED.format(module=module)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert f"usage: python -m {module}" in done.stdout
    assert done.stdout.splitlines()[-1] == "False"


def test_the_peers_networks_have_the_shapes_of_ours():
    pytest.importorskip("tensorflow")
    from experiments.flops import dense_kernels
    from gan.models import discriminator_for, generator_for

    config = Config().resolved(10_000, has_gpu=False)
    assert peers.GENERATOR_KERNELS == dense_kernels(generator_for(config))
    assert peers.DISCRIMINATOR_KERNELS == dense_kernels(discriminator_for(config))


def _changed(before, after) -> bool:
    return all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_the_jax_step_trains_both_networks(images):
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    import jax

    from experiments.peer_jax import JaxStep

    step = JaxStep(images, steps_per_call=2)
    before = [np.asarray(leaf) for leaf in jax.tree.leaves(step.state[:2])]
    assert step(4) > 0
    d_loss, g_loss = (np.asarray(loss) for loss in step.losses)
    assert d_loss.shape == g_loss.shape == (2,)  # one per step of the last call
    assert np.isfinite(d_loss).all() and np.isfinite(g_loss).all()
    g_before, d_before = before[:6], before[6:]  # 3 generator layers, 2 discriminator layers
    g_after, d_after = ([np.asarray(x) for x in jax.tree.leaves(p)] for p in step.state[:2])
    assert _changed(g_before, g_after) and _changed(d_before, d_after)


def test_the_torch_step_trains_both_networks(images):
    pytest.importorskip("torch")
    from experiments.peer_torch import TorchStep

    step = TorchStep(images)
    networks = step.generator, step.discriminator
    before = [[p.detach().clone().numpy() for p in n.parameters()] for n in networks]
    assert step(3) > 0
    assert all(np.isfinite(loss.item()) for loss in step.losses)
    after = [[p.detach().numpy() for p in n.parameters()] for n in networks]
    assert all(_changed(b, a) for b, a in zip(before, after, strict=True))


def test_end_to_end_times_the_real_command_and_its_start_up(data_dir):
    from experiments.benchmark import _end_to_end_markdown
    from experiments.end_to_end import EndToEnd

    run = EndToEnd(data_dir, epochs=1)  # 300 images: 2 steps an epoch
    assert isinstance(run(), float)  # one round: 1 and 2 epochs (on a busy machine, any rate)
    summary = run.summary()
    assert summary["images"] == 300 and summary["epochs"] == [1, 2]
    assert [len(rounds) for rounds in summary["runs"].values()] == [1, 1]
    assert summary["peak_rss_mb"] > 100  # TensorFlow alone takes more
    assert 0 < summary["to_training_line_seconds"] < summary["runs"]["1"][0]["wall_seconds"]
    assert len(summary["runs"]["2"][0]["epoch_seconds"]) == 2
    phases = summary["startup_seconds"]
    assert "import TensorFlow (and Keras)" in phases
    assert all(seconds >= 0 for seconds in phases.values()), phases
    table = "\n".join(_end_to_end_markdown({"tiny": summary}, textbook=1.0, default=1.0, batch=128))
    assert "| 300 images |" in table and "| total | **" in table


def test_epoch_overhead_times_each_callback_and_restores_them(data_dir, tmp_path):
    from experiments import epoch_overhead
    from gan import callbacks

    hooks_before = {
        (name, hook): getattr(cls, hook)
        for name, cls in vars(callbacks).items()
        if isinstance(cls, type)
        for hook in epoch_overhead.HOOKS
        if hasattr(cls, hook)
    }
    out = tmp_path / "overhead.md"
    argv = ["--epochs", "4", "--data", str(data_dir), "--out", str(out)]
    assert epoch_overhead.main(argv) == 0

    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
        for line in out.read_text().splitlines()
        if line.startswith("| ")
    }
    every_epoch_ms, _, by_interval_ms, _ = rows["SaveCheckpoints"]
    assert float(every_epoch_ms) > 0  # a checkpoint after epochs 2 and 3
    assert float(by_interval_ms) == 0  # none within the default interval
    assert {"StopOnNonFinite", "History", "ScalarSummaries", "all callbacks"} <= set(rows)
    assert hooks_before == {
        key: getattr(getattr(callbacks, key[0]), key[1]) for key in hooks_before
    }


def test_preset_time_trains_each_preset_and_projects_its_epochs(data_dir, tmp_path):
    from experiments import preset_time
    from gan.config import PRESETS, Config

    out = tmp_path / "presets.md"
    assert preset_time.main(["--epochs", "3", "--data", str(data_dir), "--out", str(out)]) == 0
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ")]
    by_preset = {row[0].strip("| "): row for row in rows[2:]}
    assert set(by_preset) == set(PRESETS)
    for name, row in by_preset.items():
        epoch = float(row[2].removesuffix(" s"))
        minutes, seconds = row[5].removesuffix(" s").split(" min ")
        projected = 60 * int(minutes) + float(seconds)
        assert int(row[4]) == Config.from_options(preset=name).epochs
        assert projected == pytest.approx(epoch * int(row[4]), abs=0.01 * int(row[4]) + 0.5)


def test_preset_time_variants_are_best_with_each_option_set_of_the_quality_experiment():
    from experiments import preset_time, quality

    runs = preset_time.runs(variants=True)
    assert runs["best-with-wide"] == {"preset": "best", **quality.WITH["wide"]}
    assert set(runs) == set(preset_time.runs(variants=False)) | {
        f"best-with-{name}" for name in quality.WITH
    }
    assert preset_time.flags(runs["best-with-wide"]) == [
        *("--preset", "best", "--g-hidden", "512,1024,1024", "--d-hidden", "1024,512")
    ]


def test_xla_flags_times_each_flag_set_against_the_step_without_xla(
    data_dir, tmp_path, monkeypatch
):
    """Each variant is a gan.train run whose XLA_FLAGS are the variant's (unset without XLA),
    and the caller's XLA_FLAGS are as they were afterwards."""
    from experiments import end_to_end, xla_flags

    seen = []

    def recording_run(path, epochs, *options, env):
        seen.append((options, end_to_end.child_environment(env).get("XLA_FLAGS")))
        return real_run(path, epochs, *options, env=env)

    real_run = end_to_end.run_gan_train
    monkeypatch.setattr(end_to_end, "run_gan_train", recording_run)
    monkeypatch.setattr(xla_flags, "FLAG_SETS", ("", "--xla_cpu_use_thunk_runtime=false"))
    monkeypatch.setattr(xla_flags, "ROUNDS", 1)
    monkeypatch.setenv("XLA_FLAGS", "--callers_own")
    out = tmp_path / "xla.md"
    assert xla_flags.main(["--epochs", "3", "--data", str(data_dir), "--out", str(out)]) == 0

    assert seen == [
        (("--no-jit",), None),
        (("--jit",), ""),
        (("--jit",), "--xla_cpu_use_thunk_runtime=false"),
    ]
    assert os.environ["XLA_FLAGS"] == "--callers_own"
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ")]
    by_variant = {row[0].strip("| "): row for row in rows[2:]}
    assert set(by_variant) == {
        xla_flags.NO_XLA,
        "--jit",
        "--jit --xla_cpu_use_thunk_runtime=false",
    }
    assert by_variant[xla_flags.NO_XLA][2] == "1.00x |"
    for name, row in by_variant.items():
        assert float(row[1]) > 0, name


def test_a_timed_run_s_environment_is_this_process_s_with_the_changes(monkeypatch):
    from experiments.end_to_end import child_environment

    monkeypatch.setenv("XLA_FLAGS", "--callers_own")
    monkeypatch.setenv("KEPT", "1")
    unset = child_environment({"XLA_FLAGS": None})
    assert "XLA_FLAGS" not in unset and unset["KEPT"] == "1"
    assert child_environment({"XLA_FLAGS": ""})["XLA_FLAGS"] == ""
    assert child_environment({}) == dict(os.environ)
    assert os.environ["XLA_FLAGS"] == "--callers_own"


def _gan_and_batch(images, change=None):
    """A default GAN (changed by a step_costs change) and a real batch of 8 images."""
    import keras

    from experiments import step_costs
    from gan import data
    from gan.gan import build_gan

    keras.utils.set_random_seed(0)
    model = build_gan(Config(batch_size=8).resolved(len(images), has_gpu=False))
    if change:
        getattr(step_costs, change)(model, 8)
    return model, data.to_float(images[:8])


def test_step_costs_no_dropout_makes_the_discriminator_deterministic(images):
    model, real = _gan_and_batch(images, "no_dropout")
    trained = model.discriminator(real, training=True)
    np.testing.assert_array_equal(trained, model.discriminator(real, training=False))
    default, _ = _gan_and_batch(images)
    assert not np.array_equal(default.discriminator(real, training=True), trained)


def test_step_costs_noise_drawn_once_gives_every_step_the_first_draw(images):
    model, _ = _gan_and_batch(images)
    first = model.sample_noise(8)
    model, _ = _gan_and_batch(images, "noise_drawn_once")
    np.testing.assert_array_equal(model.sample_noise(8), first)
    np.testing.assert_array_equal(model.sample_noise(8), first)


def test_step_costs_one_discriminator_call_updates_d_as_two_calls_do(images):
    """Without dropout (so that both see the same masks: none) one call on the concatenated
    batch gives the same loss and the same updated weights as the default's two calls."""
    from experiments.step_costs import one_discriminator_call

    updated = []
    for one_call in (False, True):
        model, real = _gan_and_batch(images, "no_dropout")
        if one_call:
            one_discriminator_call(model, 8)
        fake = model.generator(model.sample_noise(8), training=True)
        d_loss, _, _ = model.train_discriminator(real, fake)
        updated.append((float(d_loss), [w.numpy() for w in model.discriminator.weights]))
    (two_loss, two_weights), (one_loss, one_weights) = updated
    assert one_loss == pytest.approx(two_loss, rel=1e-5)
    for two, one in zip(two_weights, one_weights, strict=True):
        np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-6)


def test_step_costs_times_each_change_and_thread_setting_against_the_default(
    data_dir, tmp_path, monkeypatch
):
    from experiments import end_to_end, step_costs

    seen = []

    def recording_run(path, epochs, *options, env):
        child = end_to_end.child_environment(env)
        seen.append(tuple(child.get(name) for name in env))
        return real_run(path, epochs, *options, env=env)

    real_run = end_to_end.run_gan_train
    monkeypatch.setattr(end_to_end, "run_gan_train", recording_run)
    monkeypatch.setattr(step_costs, "THREADS", ((None, None), ("1", "1")))
    monkeypatch.setattr(step_costs, "ROUNDS", 1)
    # the peers as installed or not: a stand-in for each case
    peer = {"a peer": lambda steps: 10.0}, ["another peer not installed: row skipped"]
    monkeypatch.setattr(step_costs.peers, "available", lambda images, per_call: peer)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "7")  # the caller's: unset for the default
    out = tmp_path / "costs.md"
    assert step_costs.main(["--epochs", "3", "--data", str(data_dir), "--out", str(out)]) == 0

    assert seen == [(None, None), ("1", "1")]
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "7"
    text = out.read_text()
    assert "Skipped: another peer not installed: row skipped." in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")]
    by_variant = {row[0].strip("| "): row for row in rows if row[1] not in ("steps/s", "---:")}
    assert set(by_variant) == {
        step_costs.DEFAULT,
        *step_costs.CHANGES,
        "a peer",
        step_costs._threads_name(None, None),
        "intra-op=1, inter-op=1",
    }
    assert by_variant[step_costs.DEFAULT][2] == "1.00x |"
    assert by_variant[step_costs._threads_name(None, None)][2] == "1.00x |"
    for name, row in by_variant.items():
        assert float(row[1]) > 0, name


def test_the_fastest_round_of_each_variant_and_its_ratio_to_a_baseline():
    from experiments.timing import best_of, ratio_rows

    best = best_of({"default": [100.0, 120.0, 110.0], "other": [30.0, 60.0]})
    assert best == {"default": 120.0, "other": 60.0}
    assert ratio_rows(best, "default") == [
        ["default", "120.0", "1.00x"],
        ["other", "60.0", "0.50x"],
    ]
