"""What we log is what TensorBoard serves: two tiny runs, a real `tensorboard` process on
127.0.0.1, and its HTTP data API (the requests its web pages make); and the screenshot script's
skip where no browser is installed (as on CI). (The profiler trace that --profile-steps records
for TensorBoard's profile tab: tests/test_callbacks.py.)

The endpoints are TensorBoard 2.x's: /data/plugins_listing (backend/application.py),
/data/plugin/scalars/{tags,scalars}, /data/plugin/images/{tags,images,individualImage} and
/data/plugin/hparams/{experiment,session_groups} (the plugins' get_plugin_apps).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
from conftest import PROJECT_ROOT, make_images
from PIL import Image

from experiments.tensorboard_server import get_json, request, serve, wait_for
from gan.callbacks import GRID_COLS, GRID_ROWS, GRID_SCALE
from gan.config import Config, shown
from gan.train import train

METRICS = {"d_loss", "g_loss", "d_real", "d_fake"}
GRID_SIDE = (GRID_ROWS * 30 + 2) * GRID_SCALE  # 28 px digits + 2 px padding, square grid
assert GRID_ROWS == GRID_COLS
# Two runs that differ in options, as a sweep would; "small" leaves --limit unset (None).
RUNS = {
    "small": Config(epochs=3, batch_size=32, noise_dim=16, sample_every=2, jit=False),
    "tiny": Config(epochs=2, batch_size=16, noise_dim=8, limit=64, lr=1e-3, jit=False),
}
# A session-groups request lists the statuses to show; the dashboard asks for all of them.
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
DATA_TIMEOUT = 60  # seconds for TensorBoard to read the event files once it serves


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    images = make_images(128)
    for run, config in RUNS.items():
        train(config.replace(logdir=str(logdir), run=run), logdir / run, images[: config.limit])
    return logdir


@pytest.fixture(scope="module")
def url(logdir):
    with serve(logdir) as url:
        wait_for(
            lambda: _all_runs_have(get_json(url, "/data/plugin/scalars/tags"), METRICS),
            DATA_TIMEOUT,
            "the scalars of every run",
        )
        yield url


def _all_runs_have(tags_by_run: dict, tags: set) -> bool:
    return set(tags_by_run) == set(RUNS) and all(tags <= set(t) for t in tags_by_run.values())


def _history(logdir, run) -> list[dict]:
    with open(logdir / run / "history.csv", newline="") as file:
        return list(csv.DictReader(file))


def _logged_options(logdir, run) -> dict:
    """The options a run logs: those of its config.json (automatic choices resolved, layer
    widths as on the command line: 256,512), but for those left unset (None)."""
    config = Config.from_json((logdir / run / "config.json").read_text())
    options = dataclasses.asdict(config).items()
    return {name: shown(value) for name, value in options if value is not None}


def _query(**params) -> str:
    return "?" + urllib.parse.urlencode(params)


def test_scalars_images_and_hparams_plugins_are_active(url):
    plugins = get_json(url, "/data/plugins_listing")
    for name in ("scalars", "images", "hparams"):
        assert plugins[name]["enabled"], name
    assert sorted(get_json(url, "/data/runs")) == sorted(RUNS)


def test_every_metric_series_has_one_point_per_epoch_with_the_logged_values(url, logdir):
    for run, config in RUNS.items():
        history = _history(logdir, run)
        for tag in METRICS:
            series = get_json(url, "/data/plugin/scalars/scalars" + _query(run=run, tag=tag))
            steps = [step for _, step, _ in series]
            assert steps == list(range(1, config.epochs + 1)), (run, tag)
            logged = [float(row[tag]) for row in history]
            np.testing.assert_allclose([value for _, _, value in series], logged, rtol=1e-6)


def test_sample_grids_are_served_as_the_pngs_written_to_disk(url, logdir):
    assert get_json(url, "/data/plugin/images/tags")["small"].keys() == {"samples"}
    images = get_json(url, "/data/plugin/images/images" + _query(run="small", tag="samples"))
    assert [image["step"] for image in images] == [1, 2, 3]  # epoch 1, every 2nd, the last
    blob = request(url, "/data/plugin/images/individualImage?" + images[-1]["query"])
    served = Image.open(io.BytesIO(blob))
    assert served.format == "PNG" and served.size == (GRID_SIDE, GRID_SIDE)
    on_disk = Image.open(logdir / "small" / "samples" / "epoch_003.png")
    assert np.array_equal(np.asarray(served.convert("L")), np.asarray(on_disk))


def test_hparams_dashboard_lists_every_run_with_its_options_and_final_metrics(url, logdir):
    options = {run: _logged_options(logdir, run) for run in RUNS}
    experiment = get_json(url, "/data/plugin/hparams/experiment", {"experimentName": ""})
    # The union over the runs: "limit" is listed although only one run sets it.
    assert {info["name"] for info in experiment["hparamInfos"]} == set().union(*options.values())
    assert {info["name"]["tag"] for info in experiment["metricInfos"]} == METRICS

    groups = get_json(
        url,
        "/data/plugin/hparams/session_groups",
        {"experimentName": "", "startIndex": 0, "sliceSize": 10, "allowedStatuses": STATUSES},
    )["sessionGroups"]
    groups = {group["name"]: group for group in groups}  # one group (trial) per run
    assert groups.keys() == RUNS.keys()
    for run, config in RUNS.items():
        group = groups[run]
        assert [(s["name"], s["status"]) for s in group["sessions"]] == [(run, "STATUS_SUCCESS")]
        assert group["hparams"] == options[run]  # numbers come back as floats: 16.0 == 16
        final = _history(logdir, run)[-1]
        metrics = {m["name"]["tag"]: (m["trainingStep"], m["value"]) for m in group["metricValues"]}
        assert metrics.keys() == METRICS
        for tag in METRICS:
            assert metrics[tag] == (config.epochs, pytest.approx(float(final[tag]), rel=1e-6))


def test_screenshot_script_skips_with_a_clear_message_where_no_browser_is_installed(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.tensorboard_screenshot", "--out", tmp_path / "shots"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)},  # no browser
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "skipped: no Chromium browser found" in result.stderr
    assert not (tmp_path / "shots").exists()
