"""Screenshot the MLflow page of the newest finished gov-topics training run.

Starts ``mlflow ui`` on the project's tracking store (the arguments of ``make ui``, on a free
local port), finds the newest FINISHED run of the ``gov-topics`` experiment, opens the run's
page in headless Chromium, saves a PNG and stops the server. The store is
``$MLFLOW_TRACKING_URI`` when it is set (a sqlite file, or a running server, which is used as it
is), else ``experiments/mlflow.db`` of the project the working folder is in.

    .venv/bin/python scripts/screenshot_run.py [-o build/mlflow_run.png]

Needs Debian's Chromium (``apt-get install chromium``); nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import GovTopicsError
from pipeline.fsutil import project_root
from pipeline.tracking import EXPERIMENT, tracking_uri

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# what Chromium needs to run headless as root in a container, with no network of its own
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW = (1600, 2200)  # tall enough for the run's details, metrics and the first parameters
# virtual time Chromium lets the page run (its requests, its React rendering) before the
# picture; the run page has its metrics, parameters and datasets after about 3 s of it
WAIT_MS = 10_000


def find_chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise GovTopicsError("Chromium is not installed", "Debian: apt-get install chromium")


def newest_finished_run(client: Any, uri: str) -> tuple[str, str, str]:
    """(experiment id, run id, run name) of the newest FINISHED run of the experiment, asked of
    an MlflowClient (of the UI's server: only it opens the store ``uri``)."""
    try:
        exp = client.get_experiment_by_name(EXPERIMENT)
        runs = (
            client.search_runs(
                [exp.experiment_id],
                filter_string="attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if exp is not None
            else []
        )
    except Exception as exc:  # the store's errors are many and version-specific
        raise GovTopicsError(
            f"cannot read the tracking store {uri}: {type(exc).__name__}",
            "check MLFLOW_TRACKING_URI (unset it for the project's experiments/mlflow.db)",
        ) from exc
    if exp is None:
        raise GovTopicsError(
            f"no {EXPERIMENT!r} experiment in {uri}", "train and register a model: make register"
        )
    if not runs:
        raise GovTopicsError(
            f"no finished run in the {EXPERIMENT!r} experiment of {uri}",
            "register a model with make register: its run is FINISHED once it is registered",
        )
    run = runs[0]
    return str(exp.experiment_id), str(run.info.run_id), str(run.info.run_name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UI:
    """An MLflow UI: ``url``, and :meth:`ready` to wait until it answers."""

    def __init__(self, url: str, server: subprocess.Popen[bytes] | None, log: Path) -> None:
        self.url, self.server, self.log = url, server, log

    def ready(self, seconds: float = 120) -> str:
        if self.server is None:  # a running server, not ours
            return self.url
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self.url
            except OSError:
                pass
            if self.server.poll() is not None:
                raise GovTopicsError(
                    f"mlflow ui exited with code {self.server.returncode}: {self._last_line()}",
                    "run make ui to see its whole output",
                )
            if time.monotonic() > deadline:
                raise GovTopicsError(
                    f"mlflow ui did not answer at {self.url} in {seconds:.0f}s: {self._last_line()}",
                    "run make ui to see its whole output",
                )
            time.sleep(0.3)

    def _last_line(self) -> str:
        lines = self.log.read_text("utf-8", "replace").strip().splitlines()
        return (lines or ["(no output)"])[-1][:200]


@contextlib.contextmanager
def mlflow_ui(uri: str, root: Path, tmp: Path) -> Iterator[UI]:
    """An MLflow UI on the store ``uri``: for a sqlite store, ``mlflow ui`` started here (in the
    background: :meth:`UI.ready` waits for it) and stopped on leaving; for an http(s) store, that
    server."""
    log = tmp / "mlflow-ui.log"
    if uri.startswith(("http://", "https://")):
        yield UI(uri.rstrip("/"), None, log)
        return
    if not uri.startswith("sqlite:"):
        raise GovTopicsError(
            f"cannot serve the tracking store {uri}",
            "unset MLFLOW_TRACKING_URI or point it at a server",
        )
    exe = Path(sys.executable).with_name("mlflow")
    port = free_port()
    cmd = [
        str(exe) if exe.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(root / "experiments" / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",  # one page to serve: starts in seconds rather than four workers' time
    ]
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no background job runner
    }
    with open(log, "wb") as out:
        server = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield UI(f"http://127.0.0.1:{port}", server, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def screenshot(browser: str, url: str, out: Path, tmp: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [
        browser,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp / 'chromium-profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--virtual-time-budget={WAIT_MS}",
        f"--screenshot={out}",
        url,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        last = (res.stderr.strip().splitlines() or [""])[-1]
        raise GovTopicsError(
            f"Chromium made no screenshot (exit {res.returncode}): {last[:200]}",
            "run the command by hand: " + " ".join(cmd[:1] + cmd[-3:]),
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default="build/mlflow_run.png", help="PNG to write")
    args = ap.parse_args(argv)
    try:
        browser = find_chromium()  # before anything is started
        root = project_root(Path("."))
        uri = tracking_uri(root)
        db = Path(uri.removeprefix("sqlite:///"))
        if uri.startswith("sqlite:///") and not db.is_file():  # the server would make one
            raise GovTopicsError(
                f"no tracking store at {db}", "train and register a model: make register"
            )
        out = Path(args.output).resolve()
        with (
            tempfile.TemporaryDirectory(prefix="screenshot-run-") as t,
            mlflow_ui(uri, root, Path(t)) as ui,
        ):
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow.tracking import MlflowClient  # imported while the server starts

            client = MlflowClient(tracking_uri=ui.ready())
            exp_id, run_id, run_name = newest_finished_run(client, uri)
            # workflowType: the UI's "Model training" view, not its GenAI one (its default)
            page = f"{ui.url}/#/experiments/{exp_id}/runs/{run_id}?workflowType=machine_learning"
            screenshot(browser, page, out, Path(t))
    except GovTopicsError as exc:
        print(f"screenshot_run: {exc}", file=sys.stderr)
        return 2
    print(f"screenshot_run: run {run_name} ({run_id}) -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
