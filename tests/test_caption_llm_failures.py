"""`caption --llm` runs that caption nothing: a non-zero exit with the first error's cause, connection
failures named as such, and a progress total that counts what `--where` selected."""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest
from llm_server import FakeOpenAI
from typer.testing import CliRunner

from imdd_build.cli import app

FAST = ["--max-retries", "1", "--concurrency", "4"]
pytestmark = pytest.mark.usefixtures("fast_llm_retries")


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory) -> Path:
    from conftest import Cli

    from imdd_build.sources.demo import generate_demo

    base = tmp_path_factory.mktemp("demo")
    Cli(base / "ws")("ingest", "demo", "--root", str(generate_demo(base / "src")), "--workers", "1")
    return base / "ws"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-failures")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def caption(ws: Path, base_url: str, *args: str):
    return CliRunner().invoke(app, ["--workspace", str(ws), "caption", "--llm", "--base-url", base_url, *FAST,
                                    *args, "--json"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused


def test_every_request_failing_exits_non_zero_with_the_first_cause(demo_ws):
    with FakeOpenAI(api_key="sk-test-failures") as server:
        server.fault_fn = lambda record, facts, attempt: "500"
        for extra in ([], ["--limit", "2"]):
            result = caption(demo_ws, server.base_url, *extra)
            assert result.exit_code == 2, result.stdout
            error = result.stdout.strip().splitlines()[-1]
            assert re.search(r'"error": "nothing captioned: \d+ record\(s\) failed; the first because '
                             r'InternalServerError 500', error), error
            assert "error: nothing captioned" in " ".join(result.stderr.split())
        assert server.chat_log()  # the requests were really sent


def test_some_failures_are_not_a_run_error(demo_ws, tmp_path):
    with FakeOpenAI(api_key="sk-test-failures") as server:
        first = sqlite3.connect(demo_ws / "catalog.sqlite").execute("SELECT MIN(key) FROM records").fetchone()[0]
        server.fault_fn = lambda record, facts, attempt: "500" if record == first else "ok"
        ws = tmp_path / "ws"
        shutil.copytree(demo_ws, ws)
        result = caption(ws, server.base_url)
        assert result.exit_code == 0, result.stdout
        assert '"errors": 1' in result.stdout and '"error": null' in result.stdout


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_connection_failures_are_reported_as_such(demo_ws, transport):
    port = closed_port()
    result = caption(demo_ws, f"http://127.0.0.1:{port}/v1", "--transport", transport, "--limit", "3")
    assert result.exit_code == 2
    error = result.stdout.strip().splitlines()[-1]
    assert f"connection failed: cannot connect to http://127.0.0.1:{port}/v1/chat/completions" in error, error
    assert "Timeout" not in error and "ConnectionRefusedError" in error


def test_progress_total_counts_the_records_where_selects(demo_ws):
    normal = sqlite3.connect(demo_ws / "catalog.sqlite").execute(
        "SELECT COUNT(*) FROM records WHERE label = 'normal'").fetchone()[0]
    total = sqlite3.connect(demo_ws / "catalog.sqlite").execute("SELECT COUNT(*) FROM records").fetchone()[0]
    assert 0 < normal < total
    result = caption(demo_ws, f"http://127.0.0.1:{closed_port()}/v1", "--where", "label = 'normal'")
    bars = re.findall(r"caption --llm\S*\s.*?(\d+)/(\d+)", result.stderr)
    assert bars and int(bars[-1][1]) == normal, result.stderr
