"""A real TensorBoard server for tests and scripts, and its HTTP data API.

    with serve("logs") as url:                          # "http://127.0.0.1:PORT"
        plugins = get_json(url, "/data/plugins_listing")

`serve` runs `tensorboard --logdir DIR` in a subprocess bound to 127.0.0.1 and always stops it
when the block ends, also when the block raises. Every wait is bounded, so nothing here can
hang a caller: a server that does not start or answer in time raises TensorBoardError.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

# TensorBoard's start-up line on stderr, e.g. "TensorBoard 2.21.0 at http://127.0.0.1:40123/".
_SERVING = re.compile(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/")
# The server is on the loopback: never send its requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TensorBoardError(RuntimeError):
    """TensorBoard did not start, exited, or did not show the expected data in time."""


@contextlib.contextmanager
def serve(logdir: str | Path, start_timeout: float = 120.0):
    """Runs TensorBoard on `logdir` and yields its base URL once it accepts requests.

    `--port 0` lets the system pick a free port, so servers started in parallel never
    collide; the chosen port is read from TensorBoard's start-up line. `python -m
    tensorboard.main` is what the `tensorboard` command runs, here with this interpreter's
    TensorBoard. Start-up takes seconds (TensorBoard imports TensorFlow).
    """
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    command += ["--host", "127.0.0.1", "--port", "0"]
    server = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = queue.Queue()
    # Drains stderr for the server's whole life: a full pipe would block the server.
    threading.Thread(target=_read_lines, args=(server.stderr, lines), daemon=True).start()
    try:
        yield _wait_for_url(server, lines, start_timeout)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def request(url: str, path: str, body: dict | None = None, timeout: float = 10.0) -> bytes:
    """The response body of GET url+path, or of a POST of `body` as JSON when given.
    An HTTP error status raises urllib.error.HTTPError."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    with _OPENER.open(urllib.request.Request(url + path, data, headers), timeout=timeout) as r:
        return r.read()


def get_json(url: str, path: str, body: dict | None = None, timeout: float = 10.0):
    """`request`, decoded as JSON."""
    return json.loads(request(url, path, body, timeout))


def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    """Calls `check()` until it returns something true, and returns that. TensorBoard reads
    event files in the background, so data appears some time after the server starts.
    Raises TensorBoardError saying `what` was awaited after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TensorBoardError(f"TensorBoard did not show {what} within {timeout:.0f} s")
        time.sleep(interval)


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)  # end of output: the server has exited


def _wait_for_url(server: subprocess.Popen, lines: queue.Queue, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            raise TensorBoardError(
                f"TensorBoard exited with status {server.wait(timeout=15)}:\n{''.join(seen[-20:])}"
            )
        seen.append(line)
        serving = _SERVING.search(line)
        if serving:
            return serving[1]
    raise TensorBoardError(f"TensorBoard did not start in {timeout:.0f} s:\n{''.join(seen[-20:])}")
