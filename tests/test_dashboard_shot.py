"""scripts/screenshot_run.py: the MLflow page of the newest finished training run, as a PNG taken
by headless Chromium from ``mlflow ui`` on the tests' tracking store."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "screenshot_run.py"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _script(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(b) for b in BROWSERS),
    reason="Chromium is not installed (Debian: apt-get install chromium)",
)
def test_screenshot_of_the_newest_run_page(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "shots" / "run.png"
    res = _script(trained, "-o", str(out))  # the `trained` store: MLFLOW_TRACKING_URI
    assert res.returncode == 0, res.stderr
    assert "screenshot_run: run small (" in res.stderr
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1600, 2200)  # the whole window
    # a blank or error page of this size compresses to a few kB; the run page is ~200 kB
    assert len(png) > 60_000, len(png)


def test_without_chromium_it_says_what_to_install(tmp_path: Path) -> None:
    res = _script(tmp_path, env={"PATH": str(tmp_path)})  # no browser on PATH
    assert res.returncode == 2
    assert res.stderr == (
        "screenshot_run: Chromium is not installed (Debian: apt-get install chromium)\n"
    )
    assert not (tmp_path / "build").exists()
