"""The README's two commands: `make run` serves the demo; `make test` is what CI runs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_make_run_serves_the_demo(tmp_path):
    port = free_port()
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTS_")}
    # -o: use the virtual environment these tests run in instead of making one.
    process = subprocess.Popen(
        [
            "make",
            "-o",
            f"{venv}/bin/points",
            "run",
            f"VENV={venv}",
            f"PORT={port}",
            f"DEMO_DB={tmp_path}/demo.sqlite",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and body is None:
            if process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/health", timeout=2
                ) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the server never answered"
        assert '"status":"ok"' in body.replace(" ", "")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output.append(process.communicate(timeout=30)[0])
    printed = "".join(output)
    assert "Demo loaded: 5 district nodes, 20 volunteers" in printed
    for role in ("admin", "office", "auditor", "kiosk", "volunteer"):
        assert re.search(rf"^\s+{role}\s+sp_\S+\s+\(.+\)$", printed, re.M), printed
    assert re.search(r"card [0-9A-Z]{10}\s+PIN [0-9]{6}", printed)
    assert f"http://127.0.0.1:{port}/api/v1/docs" in printed
    # Each audience's page, the barber's provider link, and the demo's card sheet.
    for role in ("admin", "office", "auditor"):
        assert re.search(
            rf"^\s+{role}\s+\S+\s+[a-z0-9]{{4}}-[a-z0-9]{{4}}-[a-z0-9]{{4}}$", printed, re.M
        )
    for page in ("/me", "/kiosk", "/provider", "/provider/link/sp_", "/office/cards", "/office"):
        assert f"http://127.0.0.1:{port}{page}" in printed, printed
    sheet = (tmp_path / "cards.html").read_text(encoding="utf-8")
    assert sheet.count('<article class="card"') == 20
