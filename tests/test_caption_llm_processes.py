"""`caption --llm --processes N`: client processes over hash partitions of the records, sharing one
budget, limit, Retry-After pause and stop; and the shared run state itself across real processes."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import time

import pytest

import test_caption_llm as base
from test_caption_llm import KEY, N, _answers, _records, caption_cmd, kill_after_answers, wait_for_answers

from imdd_build.caption.llm_state import RunState, SharedRunState

# the fixtures of the single-process tests: a copied demo workspace, the fake server, the CLI runner
demo_ws, ws, server, llm = base.demo_ws, base.ws, base.server, base.llm


def test_processes_caption_each_record_once_and_rerun_sends_nothing(ws, server, llm):
    out = llm("--processes", "2", "--concurrency", "8")
    assert out["processes"] == 2 and out["transport"] == "aiohttp"
    assert out["captioned"] == N and out["passed"] == N and out["requests"] == N and out["errors"] == 0
    assert sum(out["requests_per_process"]) == N and all(n > 0 for n in out["requests_per_process"])
    assert len(out["client_cpu_s"]) == 2 and all(s > 0 for s in out["client_cpu_s"])
    sent = [e["request"] for e in server.chat_log()]
    assert len(sent) == len(set(sent)) == N
    rows = _answers(ws)
    assert len(rows) == N and len({r[0] for r in rows}) == N
    assert all(r.caption_source == "llm" and r.caption_meta["checks"]["passed"] for r in _records(ws).values())
    again = llm("--processes", "3", "--concurrency", "8")  # another N: the answers, not the partition, decide
    assert again["requests"] == 0 and again["already"] == N and len(server.chat_log()) == N


def test_processes_share_the_limit_and_the_budget(ws, server, llm):
    limited = llm("--processes", "2", "--concurrency", "4", "--limit", "5")
    assert limited["captioned"] == 5 and limited["stopped"] == "limit" and len(server.chat_log()) == 5
    dry = llm("--dry-run")
    budget = dry["estimated_cost_usd"] / 4
    capped = llm("--processes", "2", "--concurrency", "4", "--max-cost", f"{budget:.8f}")
    assert capped["stopped"] == "max_cost" and 0 < capped["captioned"] < N - 5
    assert capped["cost_usd"] <= budget * 1.5  # one budget for both processes, not one each
    rest = llm("--processes", "2", "--concurrency", "4")
    assert rest["stopped"] is None and rest["captioned"] == N - 5 - capped["captioned"]
    sent = [e["request"] for e in server.chat_log()]
    assert len(sent) == len(set(sent)) == N


def test_retry_after_pauses_every_process(ws, server, llm):
    server.latency = 0.02
    rec = sorted(_records(ws))[0]
    server.faults = {rec: ["429:0.6", "ok"]}
    out = llm("--processes", "2", "--concurrency", "4")
    assert out["captioned"] == N and out["transport_retries"] == 1
    log = server.chat_log()
    t429 = next(e["t"] for e in log if e.get("status") == 429)
    during = [e for e in log if t429 + 0.1 < e["t"] < t429 + 0.5]
    assert during == []  # neither process sent anything while the server asked everyone to wait


def test_fatal_error_in_one_process_stops_all(ws, server, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-000")
    out = llm("--processes", "2", "--concurrency", "4", expect=2)
    assert "AuthenticationError 401" in out["error"] and out["captioned"] == 0
    assert len(server.chat_log()) <= 4


def test_httpx_transport(ws, server, llm):
    out = llm("--transport", "httpx", "--concurrency", "40", "--processes", "1")
    assert out["transport"] == "httpx" and out["captioned"] == N and out["requests"] == N
    llm("--transport", "curl", expect=2)


def test_sigkill_with_processes_then_rerun_captions_each_record_once(ws, server):
    server.latency = 0.05
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    cmd = caption_cmd(ws, server, "--processes", "2")
    out, errout, kill_t = kill_after_answers(cmd, env, ws / "catalog.sqlite")  # waits for the client processes too
    time.sleep(0.3)
    assert [e for e in server.chat_log() if e["t"] > kill_t] == []  # the client processes died with it
    persisted = {f"{ck}:{a}" for _, a, ck in _answers(ws)}
    assert 12 <= len(persisted) < N
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["processes"] == 2 and summary["from_cache"] + summary["requests"] == summary["captioned"]
    after = [e for e in server.chat_log() if e["t"] > kill_t]
    resent = {e["request"] for e in after}
    assert not resent & persisted and len(after) == len(resent)  # nothing answered was asked again
    rows = _answers(ws)
    assert len(rows) == N and len({r[0] for r in rows}) == N
    assert all(r.caption_source == "llm" for r in _records(ws).values())
    for text in (out, errout, done.stdout, done.stderr):
        assert KEY not in text


# -- the shared state, across real processes ------------------------------------------------------
def _spend(state: SharedRunState, tries: int, results) -> None:
    reserved = taken = 0
    for _ in range(tries):
        if state.reserve(0.01):
            reserved += 1
            state.settle(0.01, 0.01)
        taken += state.take()
    if reserved == 0:
        state.fail("nothing left for me")
    results.put((reserved, taken))


def test_shared_state_is_one_budget_and_one_limit_across_processes():
    ctx = mp.get_context("spawn")
    state = SharedRunState(ctx, max_cost=1.005, limit=50)
    results = ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(state, 80, results)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert sum(r for r, _ in got) == 100 and sum(t for _, t in got) == 50  # not 3 x 100, not 3 x 50
    assert state.stopped == "max_cost" and state.limited and state.halted
    assert abs(state.spent - 1.0) < 1e-9 and abs(state.reserved) < 1e-9
    assert state.fatal in (None, "nothing left for me")


def test_local_and_shared_state_agree():
    ctx = mp.get_context("spawn")
    for state in (RunState(max_cost=0.05, limit=2), SharedRunState(ctx, max_cost=0.05, limit=2)):
        assert state.reserve(0.03) and not state.reserve(0.03) and state.stopped == "max_cost"
        state.settle(0.03, 0.02)
        assert abs(state.spent - 0.02) < 1e-12 and state.reserved == 0
        assert state.take() and state.take() and not state.take() and state.limited
        state.pause(5.0)
        state.pause(3.0)
        assert state.pause_until() == 5.0
        state.fail("AuthenticationError 401: bad key")
        state.fail("a later error")
        assert state.fatal == "AuthenticationError 401: bad key"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_stops_cleanly_keeping_every_answer(ws, server, processes):
    server.latency = 0.3
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    cmd = caption_cmd(ws, server, "--processes", processes)
    # Ctrl-C as a terminal sends it: SIGINT at its default, even when pytest runs from a background
    # shell job (which starts every child with SIGINT ignored)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_answers(ws / "catalog.sqlite", 8, proc)
    proc.send_signal(signal.SIGINT)
    out, errout = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in errout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped"] == "interrupted" and 8 <= summary["requests"] < N
    assert len(server.chat_log()) == summary["requests"] == len(_answers(ws))  # nothing answered was lost
    rest = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout.strip().splitlines()[-1])["requests"] == N - summary["requests"]
    sent = [e["request"] for e in server.chat_log()]
    assert len(sent) == len(set(sent)) == N


def test_force_is_refused_with_llm(ws, server, llm):
    out = llm("--force", expect=2)
    assert "--force is for template captions" in out["error"] and server.log == []
