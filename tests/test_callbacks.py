"""gan.callbacks: the profiler trace, evaluation records, the NaN guard and checkpoint saving."""

from __future__ import annotations

import json
import signal
import types
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import make_gan, make_images

from gan import callbacks, rundir
from gan.callbacks import Evaluation, SaveCheckpoints, StopOnNonFinite
from gan.checkpoints import Checkpoints
from gan.config import Config
from gan.models import build_generator
from gan.safety import NonFiniteLoss
from gan.train import train


def test_profile_steps_record_a_profiler_trace_of_exactly_those_steps(tmp_path):
    # 128 images in batches of 32: 4 steps an epoch, so steps 3-5 span the epoch boundary.
    config = Config(epochs=2, batch_size=32, noise_dim=8, jit=False, profile_steps="3,5")
    train(config, tmp_path / "run", make_images(128))
    traces = list((tmp_path / "run" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1  # one trace: started once, stopped once
    assert sorted(_marked_steps(traces[0])) == [3, 4, 5]


def _marked_steps(trace: Path) -> list[int]:
    """The step numbers of the "train" step markers in a profiler trace (an XSpace proto)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    steps = []
    for plane in xplane_pb2.XSpace.FromString(trace.read_bytes()).planes:
        stat_names = {key: stat.name for key, stat in plane.stat_metadata.items()}
        for event in (event for line in plane.lines for event in line.events):
            if plane.event_metadata[event.metadata_id].name == "train":
                stats = {stat_names[stat.metadata_id]: stat.int64_value for stat in event.stats}
                steps.append(stats["step_num"])
    return steps


def test_a_resumed_run_replaces_the_training_records_of_the_epochs_it_trains_again(
    tmp_path, evaluator
):
    path = tmp_path / "eval.json"
    for record in [("training", 1), ("g.keras", 3), ("training", 2), ("training", 3)]:
        rundir.append_record(path, {"samples": record[0], "epoch": record[1]})
    # The run was killed after epoch 3 but checkpointed after epoch 1: it trains 2 again.
    callback = Evaluation(evaluator, tmp_path, tf.summary.create_noop_writer(), 1, 5)
    callback.set_model(types.SimpleNamespace(sampler=build_generator("mlp", 8)))
    callback.on_epoch_end(1)
    records = json.loads(path.read_text())
    assert [(r["samples"], r["epoch"]) for r in records] == [
        ("training", 1),
        ("g.keras", 3),  # gan.evaluate's record stays
        ("training", 2),  # the new one, with scores
    ]
    assert records[-1]["generated"]["n"] == evaluator.held_out_count


def test_a_nonfinite_loss_is_reported_with_its_epoch_and_step(tmp_path):
    guard = StopOnNonFinite(Checkpoints(make_gan(), tmp_path, ""), steps_per_epoch=9)
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(3, {"d_loss": 0.7, "g_loss": 0.6})
    with pytest.raises(NonFiniteLoss, match="g_loss is inf at epoch 3, step 5 of 9"):
        guard.on_train_batch_end(4, {"d_loss": 0.7, "g_loss": float("inf")})


@pytest.mark.parametrize(
    ("every", "ends", "saved"),
    [
        # by interval (60 s): the first epoch end 60 s or more after the last save; the last
        (None, [10, 59, 61, 100, 121, 130], [3, 5, 6]),
        # every 2 epochs, whatever the time; the last
        (2, [100, 200, 300, 400, 500], [2, 4, 5]),
    ],
)
def test_checkpoints_are_saved_by_interval_or_every_n_epochs_and_after_the_last(
    monkeypatch, every, ends, saved
):
    now = [0.0]  # seconds: the start of training, then each epoch's end
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    store = types.SimpleNamespace(saves=[])
    store.save = store.saves.append
    stop = types.SimpleNamespace(signum=None)
    saver = SaveCheckpoints(store, len(ends), stop, every=every, interval=60.0)
    saver.on_train_begin()
    for epoch, end in enumerate(ends):
        now[0] = end
        saver.on_epoch_end(epoch)
    assert store.saves == saved


def test_a_stop_request_saves_the_epoch_and_stops():
    store = types.SimpleNamespace(saves=[])
    store.save = store.saves.append
    stop = types.SimpleNamespace(signum=signal.SIGTERM)
    saver = SaveCheckpoints(store, 10, stop, interval=60.0)
    saver.set_model(types.SimpleNamespace(stop_training=False))
    saver.on_train_begin()
    saver.on_epoch_end(2)
    assert store.saves == [3] and saver.model.stop_training
