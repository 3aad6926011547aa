"""Options: textbook defaults, validation, JSON round trip, the generated command line."""

from __future__ import annotations

import argparse
import json

import pytest

from gan.config import (
    ADDED_LATER,
    CHANGEABLE_ON_RESUME,
    PRESETS,
    Config,
    format_widths,
    parse_step_range,
    parse_widths,
    steps_per_epoch,
)
from gan.errors import UsageError


def test_defaults_are_the_textbook_settings():
    config = Config()
    assert (config.epochs, config.batch_size, config.noise_dim) == (100, 128, 128)
    assert (config.lr, config.beta1, config.sample_every) == (2e-4, 0.5, 10)
    assert config.arch == "mlp" and config.dataset == "mnist"


@pytest.mark.parametrize(
    "image_count, batch_size, steps_per_call, expected",
    [
        (10_000, 128, 32, 26),  # 78 steps per epoch = 2 * 3 * 13
        (60_000, 128, 32, 26),  # 468 = 4 * 9 * 13
        (60_000, 128, 500, 468),  # a whole epoch per call
        (10_000, 128, 1, 1),
        (1_000, 8, 32, 25),  # 125 steps
        (131 * 16, 16, 32, 1),  # a prime number of steps: one step per call
    ],
)
def test_steps_per_call_resolves_to_a_divisor_of_the_epoch(
    image_count, batch_size, steps_per_call, expected
):
    config = Config(batch_size=batch_size, steps_per_call=steps_per_call)
    assert config.resolved(image_count, has_gpu=False).steps_per_call == expected


def test_profiling_runs_one_step_per_call_so_each_step_is_traced_alone():
    config = Config(steps_per_call=32, profile_steps="3,5")
    assert config.resolved(10_000, has_gpu=False).steps_per_call == 1


@pytest.mark.parametrize(
    "jit, has_gpu, expected",
    [(None, False, False), (None, True, True), (True, False, True), (False, True, False)],
)
def test_jit_defaults_to_xla_on_gpus_only(jit, has_gpu, expected):
    assert Config(jit=jit).resolved(10_000, has_gpu=has_gpu).jit is expected


def test_json_round_trip():
    config = Config(epochs=3, data="x/y", limit=50, jit=False, run="a")
    assert Config.from_json(config.to_json()) == config


def test_paths_are_saved_absolute_and_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    config = Config(logdir="logs/", data="./data/../data/").absolute()
    assert config.logdir == str(tmp_path.resolve() / "logs")
    assert config.data == str(tmp_path.resolve() / "data")
    assert Config().absolute().data is None


@pytest.mark.parametrize("text", ["null", "[]", "3", '"config"'])
def test_json_that_is_not_an_object_is_rejected(text):
    with pytest.raises(UsageError, match="expected a JSON object of options"):
        Config.from_json(text)


def test_json_with_missing_options_is_rejected_naming_them():
    values = json.loads(Config().to_json())
    del values["lr"], values["seed"], values["epochs"]
    with pytest.raises(UsageError, match="^options missing from config: epochs, lr, seed$"):
        Config.from_json(json.dumps(values))


def test_unknown_keys_in_json_are_rejected():
    with pytest.raises(UsageError, match="unknown options in config: colour"):
        Config.from_json('{"colour": 1}')


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "--epochs must be a number > 0"),
        ({"batch_size": -1}, "--batch-size"),
        ({"noise_dim": 0}, "--noise-dim"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"beta1": 1.0}, r"--beta1 must be in \[0, 1\)"),
        ({"beta1": -0.1}, "--beta1"),
        ({"dataset": "cifar"}, "--dataset must be one of mnist, fashion_mnist"),
        ({"arch": "resnet"}, "--arch"),
        ({"epochs": 2.5}, "--epochs must be a whole number"),
        ({"jit": "yes"}, "--jit must be true or false"),
        ({"run": "../escape"}, "--run must be a plain name"),
        ({"sample_every": 0}, "--sample-every"),
        ({"profile_steps": "5"}, "--profile-steps must be FIRST,LAST"),
        ({"profile_steps": "0,3"}, "--profile-steps"),
        ({"profile_steps": "4,2"}, "--profile-steps"),
        ({"profile_steps": "a,b"}, "--profile-steps"),
        ({"g_hidden": (256, 0)}, "--g-hidden must be one or more layer widths, each a whole"),
        ({"g_hidden": ()}, "--g-hidden must be one or more layer widths"),
        ({"d_hidden": (512, -256)}, "--d-hidden must be one or more layer widths"),
        ({"d_hidden": (512, 2.5)}, "--d-hidden must be one or more layer widths"),
        ({"d_hidden": (True,)}, "--d-hidden must be one or more layer widths"),
        ({"d_hidden": "512,256"}, "--d-hidden must be a tuple of layer widths, got '512,256'"),
        ({"d_hidden": [512, 256]}, "--d-hidden must be a tuple of layer widths"),
        ({"d_hidden": 512}, "--d-hidden must be a tuple of layer widths"),
        ({"arch": "dcgan", "d_hidden": (256,)}, "dcgan has fixed layers; --d-hidden is for"),
        ({"g_lr": 0.0}, "--g-lr must be a number > 0"),
        ({"d_lr": -1e-4}, "--d-lr"),
        ({"lr_schedule": "step"}, "--lr-schedule must be one of constant, linear, cosine"),
        ({"loss": "wasserstein"}, "--loss must be one of nonsaturating, hinge"),
        ({"r1": -1.0}, "--r1 must be a number >= 0"),
        ({"ema": 1.0}, r"--ema must be 0 \(off\) or in \(0, 1\)"),
        ({"ema": -0.1}, "--ema"),
        ({"augment": "translation,flip"}, "--augment must be one or more of translation, cutout"),
        ({"augment": "translation,none"}, "--augment"),
        ({"augment": "cutout,cutout"}, "--augment"),
        ({"preset": "fancy"}, "--preset must be one of textbook, best"),
        ({"num_classes": 10}, "--num-classes is for --conditional runs only"),
        ({"conditional": True, "num_classes": 1}, r"--num-classes must be in 2\.\.256"),
        ({"conditional": True, "num_classes": 257}, "--num-classes must be in"),
        ({"conditional": "yes"}, "--conditional must be true or false"),
        ({"arch": "mlp-bn", "conditional_bn": True}, "--conditional-bn is for --conditional or"),
        (
            {"conditional": True, "conditional_bn": True},  # the textbook's mlp: no BatchNorm
            "--conditional-bn is for --conditional or --self-condition runs of --arch mlp-bn",
        ),
        ({"r1": 1.0, "mixed_precision": "float16"}, "--r1 needs the gradient"),
        ({"self_condition": 1}, r"--self-condition must be 0 or in 2\.\.256, got 1"),
        ({"self_condition": 257}, "--self-condition must be 0 or in"),
        ({"self_condition": 4, "conditional": True}, "--conditional trains on the images' labels"),
        (
            {"arch": "dcgan", "g_hidden": (256,), "d_hidden": (64,)},
            "--arch dcgan has fixed layers; --g-hidden and --d-hidden are for --arch mlp and "
            "mlp-bn only",
        ),
    ],
)
def test_bad_values_raise_config_error_naming_the_flag(changes, message):
    with pytest.raises(UsageError, match=message):
        Config(**changes)


def test_command_line_keeps_only_given_flags():
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    args = parser.parse_args(["--epochs", "7", "--no-jit", "--batch-size", "64"])
    assert Config.given_options(args) == {"epochs": 7, "jit": False, "batch_size": 64}
    assert Config(**Config.given_options(args)) == Config(epochs=7, jit=False, batch_size=64)


def test_widths_parse_as_whole_numbers_of_at_least_one():
    assert parse_widths("256,512,1024") == (256, 512, 1024) and parse_widths(" 7 ") == (7,)
    for text in ("", "0", "256,", ",256", "256;512", "2.5", "-4", "a"):
        assert parse_widths(text) is None, text
    assert format_widths((256, 512, 1024)) == "256,512,1024" and format_widths((7,)) == "7"


def test_widths_are_tuples_given_on_the_command_line_as_text():
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    args = parser.parse_args(["--arch", "mlp-bn", "--g-hidden", "64, 64", "--d-hidden", "32"])
    assert Config.given_options(args) == {"arch": "mlp-bn", "g_hidden": (64, 64), "d_hidden": (32,)}
    assert Config(**Config.given_options(args)).g_hidden == (64, 64)


@pytest.mark.parametrize("text", ["256,0", "", "512,,256", "wide", "2.5"])
def test_bad_widths_on_the_command_line_are_refused_naming_the_flag(text, capsys):
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--g-hidden", text])
    assert exit_info.value.code == 2
    expected = "argument --g-hidden: must be layer widths separated by commas, each a whole"
    assert expected in capsys.readouterr().err


def test_widths_are_json_lists_in_config_json():
    config = Config(arch="mlp-bn", g_hidden=(64, 64), d_hidden=(32,))
    values = json.loads(config.to_json())
    assert (values["g_hidden"], values["d_hidden"]) == ([64, 64], [32])
    assert Config.from_json(config.to_json()) == config
    values["d_hidden"] = [32, 0]
    with pytest.raises(UsageError, match="--d-hidden must be one or more layer widths"):
        Config.from_json(json.dumps(values))


def test_a_config_json_with_widths_as_text_reads_as_the_same_widths():
    """config.json files written before layer widths were tuples hold them as "256,512": their
    runs still resume, and experiments still recognise them as finished."""
    config = Config(arch="mlp-bn", g_hidden=(256, 512, 1024), d_hidden=(512,))
    values = {**json.loads(config.to_json()), "g_hidden": "256,512,1024", "d_hidden": "512"}
    assert Config.from_json(json.dumps(values)) == config
    values["g_hidden"] = "256,0"  # never written, but refused as any bad value is
    with pytest.raises(UsageError, match="--g-hidden must be a tuple of layer widths"):
        Config.from_json(json.dumps(values))


@pytest.mark.parametrize(
    "arch, g_hidden, d_hidden",
    [("mlp", (256, 512), (256,)), ("mlp-bn", (256, 512, 1024), (512, 256)), ("dcgan", None, None)],
)
def test_resolving_names_the_default_hidden_widths_of_the_mlps(arch, g_hidden, d_hidden):
    resolved = Config(arch=arch).resolved(10_000, has_gpu=False)
    assert (resolved.g_hidden, resolved.d_hidden) == (g_hidden, d_hidden)


def test_given_hidden_widths_survive_resolving():
    config = Config(arch="mlp-bn", g_hidden=(64, 64), d_hidden=(32,))
    assert config.resolved(10_000, has_gpu=False).g_hidden == (64, 64)
    assert config.resolved(10_000, has_gpu=False).d_hidden == (32,)


def test_a_resumed_run_keeps_its_widths_and_shows_them_as_the_command_line_does():
    saved = Config(g_hidden=(256, 512), d_hidden=(256,), run="a")
    assert saved.resumed_with({"g_hidden": (256, 512), "epochs": 200}) == saved.replace(epochs=200)
    with pytest.raises(UsageError, match=r"--g-hidden 256,512,64 \(saved: 256,512\)"):
        saved.resumed_with({"g_hidden": (256, 512, 64)})


def test_steps_per_epoch_drop_the_last_partial_batch():
    assert steps_per_epoch(1000, 128) == 7 and steps_per_epoch(1024, 128) == 8
    assert Config(batch_size=100).steps_per_epoch(999) == steps_per_epoch(999, 100) == 9


def test_step_ranges_parse_with_first_at_most_last():
    assert parse_step_range("5,10") == (5, 10) and parse_step_range(" 3 , 3 ") == (3, 3)
    for text in ("5", "0,3", "4,2", "1,2,3", "-1,2", "a,b", ""):
        assert parse_step_range(text) is None, text


def test_a_resumed_run_may_change_only_its_length_output_cadence_and_location():
    saved = Config(epochs=4, lr=1e-3, jit=True, logdir="logs", run="a")
    changes = {"epochs": 9, "sample_every": 2, "checkpoint_every": 3, "logdir": "moved", "run": "b"}
    assert saved.resumed_with({**changes, "lr": 1e-3}) == saved.replace(**changes)  # lr: same
    with pytest.raises(UsageError, match=r"--lr 0.1 \(saved: 0.001\), --jit False \(saved: True\)"):
        saved.resumed_with({"epochs": 9, "lr": 0.1, "jit": False})


def test_every_training_option_is_off_in_the_textbook_default():
    config = Config()
    assert config.learning_rates == (2e-4, 2e-4) and config.lr_schedule == "constant"
    assert config.loss == "nonsaturating" and config.r1 == 0 and not config.spectral_norm
    assert config.augment is None and config.ema is None and config.preset is None
    assert PRESETS["textbook"] == {}
    assert Config.from_options(preset="textbook") == Config(preset="textbook")


def test_a_preset_sets_its_options_and_given_flags_override_them():
    best = Config.from_options(preset="best")
    assert best.preset == "best"
    assert all(getattr(best, name) == value for name, value in PRESETS["best"].items())
    assert Config.from_options().preset is None and Config.from_options() == Config()
    overridden = Config.from_options(preset="best", arch="mlp", epochs=7)
    assert (overridden.arch, overridden.epochs) == ("mlp", 7)
    assert Config.from_json(best.to_json()) == best  # config.json records the resolved options


# How the command line gives each option a preset sets its textbook value back
TEXTBOOK_VALUE_FLAGS = {
    "arch": ["--arch", "mlp"],
    "ema": ["--ema", "0"],
    "r1": ["--r1", "0"],
    "self_condition": ["--self-condition", "0"],
    "epochs": ["--epochs", str(Config().epochs)],
    "augment": ["--augment", "none"],
}


def test_the_command_line_turns_off_every_option_a_preset_sets():
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    for name, options in PRESETS.items():
        for option in options:
            given = Config.given_options(
                parser.parse_args(["--preset", name, *TEXTBOOK_VALUE_FLAGS[option]])
            )
            config = Config.from_options(**given)
            assert getattr(config, option) == getattr(Config(), option), (name, option)
    # an option turned off saves and compares equal to one never given
    assert Config(ema=0.0) == Config() and Config(augment="none") == Config()
    saved = json.loads(Config(ema=0.0, augment="none").to_json())
    assert saved["ema"] is None and saved["augment"] is None
    # a resumed run keeps them, and says so in the terms the command line used
    with pytest.raises(UsageError, match=r"--ema 0 \(saved: 0.999\)"):
        Config.from_options(preset="best").resumed_with({"ema": Config(ema=0).ema})


def test_every_preset_is_a_valid_configuration_of_known_options():
    for name, options in PRESETS.items():
        Config.from_options(preset=name)  # validates
        assert set(options) <= set(Config.__dataclass_fields__) - {"preset"}


def test_separate_learning_rates_default_to_lr():
    assert Config(lr=1e-3).learning_rates == (1e-3, 1e-3)
    assert Config(lr=1e-3, d_lr=4e-3).learning_rates == (1e-3, 4e-3)
    assert Config(g_lr=1e-4, d_lr=4e-4).learning_rates == (1e-4, 4e-4)


def test_a_decaying_schedule_keeps_its_last_epoch_on_resume():
    saved = Config(epochs=10, lr_schedule="linear")
    assert saved.resumed_with({"epochs": 10, "eval_every": 2}).eval_every == 2
    with pytest.raises(UsageError, match="--lr-schedule linear decays to 0 at the saved"):
        saved.resumed_with({"epochs": 20})
    assert Config(epochs=10).resumed_with({"epochs": 20}).epochs == 20  # constant: may grow


def test_a_conditional_run_takes_its_number_of_classes_from_the_labels():
    assert Config().conditional is False  # off by default, like every other option
    assert Config().resolved(1000, False, class_count=10).num_classes is None  # unconditional
    conditional = Config(conditional=True)
    assert conditional.resolved(1000, False, class_count=10).num_classes == 10
    assert conditional.replace(num_classes=12).resolved(1000, False, 10).num_classes == 12
    with pytest.raises(UsageError, match="--num-classes 5: the training labels go up to 9"):
        conditional.replace(num_classes=5).resolved(1000, False, class_count=10)
    with pytest.raises(UsageError, match="--conditional needs at least 2 classes"):
        conditional.resolved(1000, False, class_count=1)
    with pytest.raises(ValueError, match="resolves with its labels' class count"):
        conditional.resolved(1000, False)
    saved = Config.from_json(conditional.resolved(1000, False, 10).to_json())
    assert saved.num_classes == 10 and saved.resolved(1000, False).num_classes == 10


def test_a_resumed_run_keeps_its_conditional_options():
    saved = Config(conditional=True, num_classes=10)
    assert "conditional" not in CHANGEABLE_ON_RESUME and "num_classes" not in CHANGEABLE_ON_RESUME
    with pytest.raises(UsageError, match=r"--conditional False \(saved: True\)"):
        saved.resumed_with({"conditional": False})
    with pytest.raises(UsageError, match=r"--num-classes 12 \(saved: 10\)"):
        saved.resumed_with({"num_classes": 12})


def test_a_config_json_from_before_the_options_added_later_reads_as_it_trained():
    """Runs written before --conditional existed have no such keys: they trained without. Runs
    written before --checkpoint-interval existed saved by the --checkpoint-every they record."""
    values = json.loads(Config(epochs=3, checkpoint_every=1).to_json())
    for name in ADDED_LATER:
        del values[name]
    assert Config.from_json(json.dumps(values)) == Config(epochs=3, checkpoint_every=1)
    assert ADDED_LATER == {
        "conditional": False,
        "num_classes": None,
        "checkpoint_interval": 60.0,
        "conditional_bn": False,
        "self_condition": 0,
    }
    del values["epochs"]  # any other option must still be there
    with pytest.raises(UsageError, match="^options missing from config: epochs$"):
        Config.from_json(json.dumps(values))


def test_self_conditioning_conditions_the_networks_on_its_clusters_and_labels_replace_them():
    assert Config().self_condition == 0 and Config().classes is None  # off by default
    assert Config(self_condition=50).classes == 50
    assert Config(conditional=True, num_classes=10).classes == 10
    assert Config(self_condition=50).resolved(1000, False, class_count=10).num_classes is None
    Config(arch="mlp-bn", self_condition=5, conditional_bn=True)  # BatchNorm takes clusters too
    Config(arch="dcgan", conditional=True, conditional_bn=True)  # before num_classes resolves
    best = Config.from_options(preset="best")
    assert best.self_condition == PRESETS["best"]["self_condition"] > 0
    # the images' own labels, given explicitly, take the place of the preset's clusters
    labelled = Config.from_options(preset="best", conditional=True)
    assert labelled.conditional and labelled.self_condition == 0 and labelled.ema == best.ema
    assert Config.from_options(preset="best", self_condition=0).classes is None
    with pytest.raises(UsageError, match="--conditional trains on the images' labels"):
        Config.from_options(conditional=True, self_condition=5)
    assert "self_condition" not in CHANGEABLE_ON_RESUME
