"""`caption --llm` with the real openai client against a real local HTTP server (tests/llm_server.py)."""

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_server import FakeOpenAI

from imdd_build.catalog import Catalog
from imdd_build.sources.demo import generate_demo

KEY = "sk-test-imdd-SECRET-9f3a1c7e5b2d"
N = 42  # demo records
FAST: list[str] = []  # the short backoff comes from the fast_llm_retries fixture
pytestmark = pytest.mark.usefixtures("fast_llm_retries")


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory) -> Path:
    from conftest import Cli

    base = tmp_path_factory.mktemp("demo")
    ws = base / "ws"
    cli = Cli(ws)
    cli("ingest", "demo", "--root", str(generate_demo(base / "src")), "--workers", "1")
    return ws


@pytest.fixture
def ws(demo_ws, tmp_path) -> Path:
    dst = tmp_path / "ws"
    shutil.copytree(demo_ws, dst)
    return dst


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAI(api_key=KEY) as s:
        yield s


@pytest.fixture
def llm(ws, server):
    from conftest import Cli

    cli = Cli(ws)

    def run(*args, expect=0):
        return cli("caption", "--llm", "--base-url", server.base_url, *FAST, *args, expect=expect)

    run.cli = cli
    return run


def _records(ws: Path) -> dict:
    with Catalog(ws / "catalog.sqlite") as c:
        return {r.key: r for r in c.iter_records()}


def _answers(ws: Path) -> list[tuple]:
    con = sqlite3.connect(ws / "catalog.sqlite")
    try:
        return con.execute("SELECT record_key, attempt, cache_key FROM llm_answers ORDER BY record_key").fetchall()
    finally:
        con.close()


def test_llm_captions_every_record_with_provenance_and_rerun_sends_nothing(ws, server, llm):
    out = llm("--concurrency", "8")
    assert out["captioned"] == N and out["passed"] == N and out["requests"] == N and out["errors"] == 0
    assert out["cost_usd"] > 0 and out["input_tokens"] > 0 and out["response_format"] == "json_schema"
    log = server.chat_log()
    assert len(log) == N and all(e["auth_ok"] and e["response_format"] == "json_schema" for e in log)
    for r in _records(ws).values():
        m = r.caption_meta
        assert (r.caption_source, r.caption_status) == ("llm", "draft")
        assert m["model"] == "gpt-4o-mini" and m["prompt_version"] == "1" and m["at"] and m["attempts"] == 1
        assert m["checks"]["passed"] and m["review_priority"] == 1 and len(m["cache_key"]) == 64
        assert m["source"] == "llm" and m["usage"]["input_tokens"] > 0
    again = llm()
    assert again["requests"] == 0 and again["already"] == N and len(server.chat_log()) == N


def test_transient_errors_are_retried_honouring_retry_after(ws, server, llm):
    recs = sorted(_records(ws))
    server.faults = {recs[0]: ["429:0.3", "ok"], recs[1]: ["500", "500", "ok"], recs[2]: ["timeout:2", "ok"]}
    out = llm("--timeout", "0.5", "--concurrency", "4")
    assert out["captioned"] == N and out["errors"] == 0 and out["transport_retries"] == 4
    by_rec = {}
    for e in server.chat_log():
        by_rec.setdefault(e["record"], []).append(e)
    first, second = by_rec[recs[0]]
    assert first["status"] == 429 and second["t"] - first["t"] >= 0.3  # Retry-After honoured
    assert [e.get("status") for e in by_rec[recs[1]]] == [500, 500, 200]
    assert len(by_rec[recs[2]]) == 2  # the timed-out request was sent again
    assert all(_records(ws)[k].caption_source == "llm" for k in recs[:3])


def test_retries_give_up_and_the_record_waits_for_the_next_run(ws, server, llm):
    rec = sorted(_records(ws))[5]
    server.faults = {rec: ["500"] * 3}
    out = llm("--max-retries", "2")
    assert out["errors"] == 1 and out["captioned"] == N - 1 and rec in out["error_samples"][0]
    assert _records(ws)[rec].caption is None
    again = llm()
    assert again["requests"] == 1 and again["captioned"] == 1 and again["already"] == N - 1


def test_failing_draft_is_retried_once_with_reasons(ws, server, llm):
    recs = sorted(k for k, r in _records(ws).items() if r.label == "defective")
    fixed, stuck = recs[0], recs[1]
    server.faults = {fixed: ["badcaption", "ok"], stuck: ["badcaption", "badcaption"]}
    out = llm()
    assert out["retried_with_reasons"] == 2 and out["failed_checks"] == 1 and out["passed"] == N - 1
    retry = [e for e in server.chat_log() if e["record"] == fixed][1]
    assert retry["attempt"] == 2 and "failed these checks" in retry["retry_reasons"]
    r = _records(ws)
    assert r[fixed].caption_meta["attempts"] == 2 and r[fixed].caption_meta["first_attempt_reasons"]
    s = r[stuck]
    assert (s.caption_source, s.caption_status) == ("llm", "draft") and s.caption.startswith("**Defect**")
    assert s.caption_meta["review_priority"] == 0 and not s.caption_meta["checks"]["passed"]
    assert s.caption_meta["checks"]["reasons"] and s.caption_meta["attempts"] == 2
    n = len(server.chat_log())
    assert llm()["requests"] == 0 and len(server.chat_log()) == n  # failing drafts are not paid for twice


def test_malformed_and_schema_violating_answers(ws, server, llm):
    recs = sorted(_records(ws))
    server.faults = {recs[0]: ["malformed", "ok"], recs[1]: ["schema", "malformed"]}
    out = llm()
    assert out["captioned"] == N and out["unusable"] == 1
    r = _records(ws)
    assert r[recs[0]].caption_source == "llm" and r[recs[0]].caption_meta["attempts"] == 2
    assert "not valid JSON" in r[recs[0]].caption_meta["first_attempt_reasons"][0]
    bad = r[recs[1]]  # nothing usable: the template text stays, flagged first for review
    assert bad.caption_source == "template" and bad.caption_meta["llm_failed"] and bad.caption_meta["review_priority"] == 0
    assert "schema" in bad.caption_meta["first_attempt_reasons"][0]
    assert llm()["requests"] == 0


def test_structured_output_falls_back_when_the_server_refuses_it(ws, server, llm):
    server.reject_json_schema = True
    out = llm("--limit", "5", "--concurrency", "1")
    assert out["response_format"] == "json_object" and out["captioned"] == 5 and out["errors"] == 0
    formats = [e.get("response_format") for e in server.chat_log() if e.get("status") == 200]
    assert formats == ["json_object"] * 5


def test_expert_and_verified_captions_are_never_overwritten(ws, server, llm):
    recs = sorted(_records(ws))
    with Catalog(ws / "catalog.sqlite") as c:
        a, b = c.get(recs[0]), c.get(recs[1])
        c.set_captions([a.model_copy(update={"caption": "Expert text.", "caption_source": "expert",
                                             "caption_status": "draft"}),
                        b.model_copy(update={"caption": "Checked.", "caption_source": "template",
                                             "caption_status": "verified"})])
    out = llm()
    assert out["kept"] == 2 and out["captioned"] == N - 2
    r = _records(ws)
    assert r[recs[0]].caption == "Expert text." and r[recs[1]].caption == "Checked."
    assert not {e["record"] for e in server.chat_log()} & {recs[0], recs[1]}


def test_dry_run_limit_where_and_max_cost(ws, server, llm):
    dry = llm("--dry-run")
    assert dry["dry_run"] and dry["to_send"] == N and dry["estimated_cost_usd"] > 0 and server.log == []
    assert dry["estimated_batch_cost_usd"] == pytest.approx(dry["estimated_cost_usd"] / 2, rel=1e-3)
    out = llm("--where", "label = 'normal' AND product = 'metal_plate'", "--limit", "3")
    assert out["captioned"] == 3 and out["stopped"] == "limit"
    assert all(_records(ws)[e["record"]].label == "normal" for e in server.chat_log())
    budget = dry["estimated_cost_usd"] / 4
    capped = llm("--max-cost", f"{budget:.8f}", "--concurrency", "4")
    assert capped["stopped"] == "max_cost" and 0 < capped["captioned"] < N - 3
    assert capped["cost_usd"] <= budget * 1.5
    rest = llm()
    assert rest["stopped"] is None and rest["captioned"] == N - 3 - capped["captioned"]
    sent = [e["request"] for e in server.chat_log()]
    assert len(sent) == len(set(sent)) == N
    llm("--where", "nonsense_column = 1", expect=2)
    llm("--max-cost", "1", "--model", "my-local-model", expect=2)  # unpriced model: refuse a budget
    priced = llm("--model", "my-local-model", "--price-in", "1", "--price-out", "2", "--dry-run")
    assert priced["prices"]["priced"] and priced["estimated_cost_usd"] > 0


def test_wrong_key_stops_the_run_with_one_error(ws, server, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-000")
    out = llm("--concurrency", "2", expect=2)
    assert "AuthenticationError 401" in out["error"] and out["captioned"] == 0
    assert len(server.chat_log()) <= 3


def test_batch_submit_status_collect_is_idempotent(ws, server, llm):
    def fault(record, facts, attempt):  # the first attempt for the ceramic tile's defects fails the checks
        return "badcaption" if facts.get("product") == "ceramic tile" and facts["label"] == "defective" \
            and attempt == 1 else "ok"

    server.fault_fn = fault
    sub = llm("--batch", "submit")
    assert sub["requests"] == N and len(sub["batches"]) == 1
    files = list((ws / "llm-batches").glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == N
    assert llm("--batch", "submit")["requests"] == 0  # everything is in flight
    st = llm("--batch", "status")
    assert st["batches"][0]["status"] == "in_progress"
    col = llm("--batch", "collect")
    assert col["batches_collected"] == 1 and col["answers"] == N and col["needs_retry"] == 6
    assert col["captioned"] == N - 6
    assert llm("--batch", "collect")["batches_collected"] == 0
    retry = llm("--batch", "submit")
    assert retry["requests"] == 6
    llm("--batch", "status")
    assert llm("--batch", "collect")["captioned"] == 6
    r = _records(ws)
    assert all(x.caption_source == "llm" and x.caption_meta["mode"] == "batch" for x in r.values())
    assert sum(x.caption_meta["attempts"] == 2 for x in r.values()) == 6
    lines = [e["custom_id"] for e in server.log if e["path"] == "batch-line"]
    assert len(lines) == len(set(lines)) == N + 6
    assert llm("--batch", "submit")["requests"] == 0 and server.chat_log() == []


def test_api_key_never_in_workspace_files_or_logs(ws, server, llm, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    recs = sorted(_records(ws))
    server.faults = {recs[0]: ["429:0.01", "badcaption", "malformed"], recs[1]: ["500", "schema", "ok"]}
    llm("--concurrency", "4", "--vision", "--processes", "2", "--limit", "10")  # client processes too
    llm("--concurrency", "4", "--vision")
    llm("--dry-run")
    llm("--batch", "submit", "--model", "gpt-4.1-mini")
    llm("--batch", "collect", "--model", "gpt-4.1-mini")
    llm("--batch", "status")
    assert all(e["auth_ok"] for e in server.log if "auth_ok" in e)  # the key was used ...
    captured = capfd.readouterr()
    texts = [caplog.text, captured.out, captured.err, llm.cli.last.stdout, llm.cli.last.stderr]
    assert not any(KEY in t for t in texts)  # ... and never printed or logged
    files = [p for p in ws.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p


def test_vision_sends_image_and_mask_overlay(ws, server, llm):
    seen = []
    original = server._chat

    async def spy(req, entry):
        seen.append(req)
        return await original(req, entry)

    server._chat = spy
    out = llm("--vision", "--where", "label = 'defective'", "--limit", "1")
    assert out["captioned"] == 1
    parts = seen[0]["messages"][1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 2 and all(p["image_url"]["url"].startswith("data:image/") for p in images)


def _count(db: Path, sql: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return -1


def caption_cmd(ws: Path, server: FakeOpenAI, *extra: str) -> list[str]:
    """`caption --llm` as a separate process (python -m imdd_build), 4 requests in flight."""
    return [sys.executable, "-m", "imdd_build", "--workspace", str(ws), "caption", "--llm", "--base-url",
            server.base_url, "--concurrency", "4", *extra, "--json"]


def wait_for_answers(db: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until `llm_answers` holds n rows; fails if the run ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and _count(db, "SELECT COUNT(*) FROM llm_answers") < n:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be stopped"


def kill_after_answers(cmd: list[str], env: dict, db: Path, n: int = 12) -> tuple[str, str, float]:
    """Run cmd, SIGKILL it once n answers are stored; (stdout, stderr, monotonic time of the kill).
    Returns once everything holding its pipes (client processes too) is gone."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_answers(db, n, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        out, errout = proc.communicate()
    return out, errout, time.monotonic()


def test_sigkill_mid_run_then_rerun_captions_each_record_once(ws, server):
    server.latency = 0.05
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    cmd = caption_cmd(ws, server)
    out, errout, kill_t = kill_after_answers(cmd, env, ws / "catalog.sqlite")
    persisted = {f"{ck}:{a}" for _, a, ck in _answers(ws)}
    assert 12 <= len(persisted) < N
    before = server.chat_log()
    in_flight = {e["request"] for e in before} - persisted  # sent, but the killed run never stored an answer
    assert len(in_flight) <= 4
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["from_cache"] + summary["requests"] == summary["captioned"]
    after = [e for e in server.chat_log() if e["t"] > kill_t]
    resent = {e["request"] for e in after}
    assert not resent & persisted  # no repeated request for an answered record
    assert resent | persisted == {e["request"] for e in server.chat_log()}
    assert len(after) == len(resent)
    rows = _answers(ws)
    assert len(rows) == N and len({r[0] for r in rows}) == N  # one answer per record
    recs = _records(ws)
    assert all(r.caption_source == "llm" and r.caption_meta["attempts"] == 1 for r in recs.values())
    for text in (out, errout, done.stdout, done.stderr):
        assert KEY not in text
