"""`review serve --json` prints its one JSON object (address, queue size) before serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from imdd_build.workspace import Workspace

pytest.importorskip("uvicorn")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_review_serve_json_prints_the_address_then_serves(tmp_path):
    ws = tmp_path / "ws"
    Workspace(ws).catalog().close()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "imdd_build", "--workspace", str(ws), "review", "serve",
                             "--port", str(port), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()
        summary = json.loads(line)
        assert summary == {"command": "review serve", "url": f"http://127.0.0.1:{port}/", "host": "127.0.0.1",
                           "port": port, "items": 0, "reviewers": 0}
        for _ in range(100):  # the server comes up right after the line
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as resp:
                    assert resp.status == 200
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read()) from None
                time.sleep(0.1)
        else:
            raise AssertionError("the review server did not answer")
    finally:
        proc.terminate()
        proc.wait(10)
