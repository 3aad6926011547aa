"""Screenshots of TensorBoard's SCALARS, IMAGES and HPARAMS dashboards in a real browser.

    python -m experiments.tensorboard_screenshot --logdir logs --out docs

Starts the real `tensorboard --logdir LOGDIR` on 127.0.0.1 (experiments/tensorboard_server.py),
opens each dashboard in headless Chromium driven through chromedriver (selenium), waits until the
page has drawn what the runs logged (a line per run in every scalar chart, every sample grid
loaded, a table row per run), and saves OUT/tensorboard_{scalars,images,hparams}.png.
TensorBoard's pages are JavaScript apps that fetch their data after loading, so a screenshot
taken at page load would show empty dashboards: the waits are what makes the pictures honest.

Needs Chromium and its driver (Debian: `apt-get install chromium chromium-driver`) and
selenium (`pip install -e ".[screenshots]"`). Where they are missing the script says so and
exits with status 0 without taking screenshots (a skip, not a failure): CI has no browser.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from experiments.tensorboard_server import TensorBoardError, get_json, serve, wait_for

SCALARS_SHOWN = "d_loss|g_loss|d_real|d_fake"  # a TensorBoard tag filter (a regex)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Headless Chromium as root, offline: no sandbox (it refuses root otherwise), no GPU, none of
# the background traffic to Google's services, and a profile of its own for every start.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",  # TensorBoard is on the loopback
    "--hide-scrollbars",
]

# TensorBoard draws its dashboards inside nested shadow DOMs, which querySelectorAll does not
# enter: deepAll does. The checks below run in the page and return true once it has drawn.
_DEEP_ALL = """
function deepAll(root, selector) {
  const found = [...root.querySelectorAll(selector)];
  for (const element of root.querySelectorAll("*"))
    if (element.shadowRoot) found.push(...deepAll(element.shadowRoot, selector));
  return found;
}
function deepInside(hostSelector, selector) {
  return deepAll(document, hostSelector).flatMap(host => deepAll(host.shadowRoot, selector));
}
"""
_SCALARS_DRAWN = """
const [runs, tags] = arguments;
const charts = deepAll(document, "vz-line-chart2").filter(chart =>
  deepAll(chart.shadowRoot, "path.line").filter(line => line.getAttribute("d")).length >= runs);
return charts.length >= tags;
"""
_IMAGES_LOADED = """
const [runs] = arguments;
const images = deepInside("tf-image-loader", "img");
return images.length >= runs && images.every(image => image.complete && image.naturalWidth > 0);
"""
_HPARAMS_LISTED = """
const [runs] = arguments;
const tables = deepInside("tf-hparams-table-view", "vaadin-grid");
return tables.length > 0 && (tables[0].items || []).length === runs;
"""
# The HParams table shows one column per ticked option in the left pane; tick exactly the
# options that differ between the runs, so the metrics fit beside them.
_SHOW_HPARAMS = """
const [names, shown] = arguments;
for (const box of deepInside("tf-hparams-query-pane", "paper-checkbox")) {
  const name = box.textContent.trim();
  if (names.includes(name) && box.checked !== shown.includes(name)) box.click();
}
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    missing = _missing_tools()
    if missing:
        print(f"skipped: {missing}; no screenshots taken", file=sys.stderr)
        return 0
    event_files = args.logdir.rglob("events.out.tfevents.*")
    runs = sorted({str(path.parent.relative_to(args.logdir)) for path in event_files})
    if not runs:
        print(f"error: no TensorBoard event files under {args.logdir}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        _screenshot(args, runs)
    except TensorBoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _screenshot(args: argparse.Namespace, runs: list[str]) -> None:
    """Saves the three screenshots of the runs (TensorBoard run names) under args.logdir."""
    with serve(args.logdir) as url, _chromium(_find(BROWSERS)) as browser:
        tags = wait_for(
            lambda: _tags_of_every_run(get_json(url, "/data/plugin/scalars/tags"), runs),
            args.timeout,
            f"scalars of runs {', '.join(runs)}",
        )
        hparams = get_json(url, "/data/plugin/hparams/experiment", {"experimentName": ""})
        names = [info["name"] for info in hparams["hparamInfos"]]
        # "run" always differs, and the table's Trial ID column already shows it.
        differing = [
            i["name"] for i in hparams["hparamInfos"] if i["differs"] and i["name"] != "run"
        ]
        # The training curves only: a tag filter shows its charts in one grid, not one a
        # section, and leaves out eval/* scalars, single points a line chart draws no line for.
        shown_tags = [tag for tag in tags if re.fullmatch(SCALARS_SHOWN, tag)]
        pages = [
            (
                "scalars",
                f"#scalars&tagFilter={quote(SCALARS_SHOWN)}",
                800,
                _SCALARS_DRAWN,
                [len(runs), len(shown_tags)],
            ),
            ("images", "#images", 720, _IMAGES_LOADED, [len(runs)]),
            ("hparams", "#hparams", 420, _HPARAMS_LISTED, [len(runs)]),
        ]
        for name, fragment, height, drawn, drawn_args in pages:
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": args.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            browser.get(f"{url}/{fragment}")
            _wait_in_page(browser, drawn, drawn_args, args.timeout, f"the {name} dashboard")
            if name == "hparams":
                browser.execute_script(_DEEP_ALL + _SHOW_HPARAMS, names, differing)
            time.sleep(args.settle)  # chart transitions and image fades end
            path = args.out / f"tensorboard_{name}.png"
            browser.save_screenshot(str(path))
            print(f"wrote {path} ({args.width}x{height})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.tensorboard_screenshot",
        description="Screenshot TensorBoard's scalars, images and hparams dashboards of the "
        "runs under LOGDIR in headless Chromium.",
    )
    parser.add_argument("--logdir", type=Path, default=Path("logs"), help="(default: logs)")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="(default: docs)")
    parser.add_argument("--width", type=int, default=1400, help="page width, px (default 1400)")
    parser.add_argument(
        "--timeout", type=float, default=90, help="seconds to wait for each page (default 90)"
    )
    parser.add_argument(
        "--settle", type=float, default=2, help="seconds to wait after drawing (default 2)"
    )
    return parser


def _missing_tools() -> str | None:
    """What is missing to drive a browser, or None."""
    if not _find(BROWSERS):
        return "no Chromium browser found (Debian: apt-get install chromium chromium-driver)"
    if not _find(["chromedriver"]):
        return "no chromedriver found (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[screenshots]")'
    return None


def _find(names) -> str | None:
    return next((shutil.which(name) for name in names if shutil.which(name)), None)


def _tags_of_every_run(tags_by_run: dict, runs: list[str]) -> set[str] | None:
    """The scalar tags common to all runs once TensorBoard has read every run, else None."""
    if not set(runs) <= set(tags_by_run):
        return None
    return set.intersection(*(set(tags_by_run[run]) for run in runs))


@contextlib.contextmanager
def _chromium(binary: str):
    """Headless Chromium through chromedriver with a fresh profile, quit on leaving."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        # The system's driver, named explicitly: selenium would otherwise try to download one.
        driver = webdriver.Chrome(options, Service(_find(["chromedriver"])))
        try:
            yield driver
        finally:
            driver.quit()


def _wait_in_page(browser, script: str, script_args: list, timeout: float, what: str) -> None:
    wait_for(lambda: browser.execute_script(_DEEP_ALL + script, *script_args), timeout, what)


if __name__ == "__main__":
    sys.exit(main())
