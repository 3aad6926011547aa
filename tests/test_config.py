"""Options: textbook defaults, validation, JSON round trip, the generated command line."""

from __future__ import annotations

import argparse

import pytest

from gan.config import Config, ConfigError


def test_defaults_are_the_textbook_settings():
    config = Config()
    assert (config.epochs, config.batch_size, config.noise_dim) == (100, 128, 128)
    assert (config.lr, config.beta1, config.sample_every) == (2e-4, 0.5, 10)
    assert config.arch == "mlp" and config.dataset == "mnist"


def test_json_round_trip():
    config = Config(epochs=3, data="x/y", limit=50, jit=False, run="a")
    assert Config.from_json(config.to_json()) == config


def test_unknown_keys_in_json_are_rejected():
    with pytest.raises(ConfigError, match="unknown options in config: colour"):
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
    ],
)
def test_bad_values_raise_config_error_naming_the_flag(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


def test_command_line_keeps_only_given_flags():
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    args = parser.parse_args(["--epochs", "7", "--no-jit", "--batch-size", "64"])
    assert Config.given_options(args) == {"epochs": 7, "jit": False, "batch_size": 64}
    assert Config(**Config.given_options(args)) == Config(epochs=7, jit=False, batch_size=64)


def test_a_resumed_run_may_change_only_its_length_output_cadence_and_location():
    saved = Config(epochs=4, lr=1e-3, jit=True, logdir="logs", run="a")
    changes = {"epochs": 9, "sample_every": 2, "checkpoint_every": 3, "logdir": "moved", "run": "b"}
    assert saved.resumed_with({**changes, "lr": 1e-3}) == saved.replace(**changes)  # lr: same
    with pytest.raises(
        ConfigError, match=r"--lr 0.1 \(saved: 0.001\), --jit False \(saved: True\)"
    ):
        saved.resumed_with({"epochs": 9, "lr": 0.1, "jit": False})
