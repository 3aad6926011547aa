"""gan.safety: the signal test hook, Ctrl-C and SIGTERM as stop requests, and the NaN guard."""

from __future__ import annotations

import csv
import os
import signal

import numpy as np
import pytest
import tensorflow as tf
from conftest import event_steps

from gan import data
from gan.config import Config
from gan.errors import UsageError
from gan.safety import NonFiniteLoss, SignalHook, StopRequest, signal_hook_from_env
from gan.train import train


@pytest.mark.parametrize(
    "value, hook",
    [
        ("SIGKILL@37", SignalHook(signal.SIGKILL, step=37)),
        ("SIGINT@epoch2", SignalHook(signal.SIGINT, epoch=2)),
        ("", None),
    ],
)
def test_signal_hook_is_read_from_the_environment(value, hook):
    assert signal_hook_from_env({"GAN_TEST_SIGNAL": value}) == hook


@pytest.mark.parametrize("value", ["KILL@3", "SIGKILL@0", "SIGNOPE@3", "SIGKILL@epoch", "x"])
def test_malformed_signal_hook_is_a_config_error(value):
    with pytest.raises(UsageError, match="GAN_TEST_SIGNAL"):
        signal_hook_from_env({"GAN_TEST_SIGNAL": value})


def test_first_signal_asks_to_stop_second_interrupts_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


def _poison(make_dataset, epoch, step):
    """A gan.data.make_dataset (of unlabelled batches) whose batch at (epoch, step), both
    from 1, is all NaN."""

    def poisoned(images, batch_size, seed, epochs, first_epoch=0, labels=None):
        assert labels is None
        index = (epoch - 1 - first_epoch) * (len(images) // batch_size) + step - 1
        batches = make_dataset(images, batch_size, seed, epochs, first_epoch).enumerate()
        return batches.map(lambda i, batch: tf.where(i == index, np.float32(np.nan), batch))

    return poisoned


def test_poisoned_batch_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path, images, monkeypatch
):
    monkeypatch.setattr(data, "make_dataset", _poison(data.make_dataset, epoch=3, step=5))
    config = Config(epochs=4, batch_size=32, noise_dim=8, jit=False, checkpoint_every=1)
    run_dir = tmp_path / "run"
    # NaN pixels make NaN gradients, hence NaN weights. The losses may stay finite: in a compiled
    # step on CPU the fused MatMul+BiasAdd+Relu kernel maps NaN to 0, so D's output never sees
    # it. Then the weight check at the epoch's end catches it, before the epoch is written.
    # (With several steps per compiled call, a NaN loss is seen at the end of its call.)
    caught = r"(d_loss is nan.* at epoch 3, step [5-9] of 9|generator/.* non-finite during epoch 3)"
    with pytest.raises(NonFiniteLoss, match=f"{caught}: .*ckpt-2"):
        train(config, run_dir, images)
    assert tf.train.latest_checkpoint(run_dir / "checkpoints").endswith("ckpt-2")
    assert not list((run_dir / "checkpoints").glob("ckpt-3*"))
    (events,) = run_dir.glob("*tfevents*")
    assert sorted({step for tag, step in event_steps(events)}) == [1, 2]  # nothing of epoch 3
    with open(run_dir / "history.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]
