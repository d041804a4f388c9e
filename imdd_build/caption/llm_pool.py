"""`caption --llm --processes N`: N client processes share one run.

One Python process running the openai client spends about 1.5-3 ms of CPU per request (building
the request, httpx/httpcore, parsing, checks, the catalog), so on its own it tops out at a few
hundred requests/s: at 256 requests in flight and a fast server, the client would be the
bottleneck. Here each of N spawned processes runs its own `LLMRun` (its own event loop, clients,
catalog connection) over a hash partition of the records (crc32 of the key, modulo N) with its share
of `--concurrency`. What must be one for the whole run lives in shared memory (`SharedRunState`):
the `--max-cost` budget, the `--limit` count, the Retry-After pause and the stop/fatal flags.
Answers go to the one `llm_answers` table (SQLite WAL, each process its own connection), so a
killed run resumes exactly as a single-process one does, with any N.

The client processes die with the parent (PR_SET_PDEATHSIG on Linux, else a watchdog). Ctrl-C
stops the run cleanly: no new requests, answers in flight are kept; a second Ctrl-C kills them.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from ..executor import default_workers
from ..store import Store
from .llm_client import LLMOptions, make_clients, short_error
from .llm_run import LLMRun
from .llm_state import SharedRunState
from .pricing import Prices

log = logging.getLogger("imdd_build.caption.llm")
PER_PROCESS = 64  # requests in flight per client process that `--processes auto` aims at
FORMAT_ORDER = ("json_schema", "json_object", "none")


def auto_processes(concurrency: int) -> int:
    """One client process per 64 requests in flight, at most one per CPU core."""
    return max(1, min(default_workers(), -(-concurrency // PER_PROCESS)))


def shares(concurrency: int, n: int) -> list[int]:
    """`concurrency` split over n processes as evenly as possible (each at least 1)."""
    return [max(1, concurrency // n + (i < concurrency % n)) for i in range(n)]


# -- the client process ----------------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL) != 0:  # PR_SET_PDEATHSIG
            raise OSError
    except (OSError, AttributeError):  # not Linux: poll instead
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _client_process(index: int, n: int, parent: int, catalog_path: str, store_root: str, options: LLMOptions,
                    prices: Prices, state: SharedRunState, progress: Any, results: Any) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into a shared clean stop
    cpu = time.process_time()
    done = [0, time.monotonic()]

    def tick(_record: Any) -> None:
        done[0] += 1
        t = time.monotonic()
        if done[0] >= 64 or t - done[1] > 0.2:
            progress.put(done[0])
            done[0], done[1] = 0, t

    outcome: dict[str, Any] = {}
    try:
        with Catalog(Path(catalog_path)) as catalog:
            run = LLMRun(catalog, Store(Path(store_root)), options, prices, on_record=tick, state=state,
                         partition=(index, n))
            run.clients = make_clients(options)
            asyncio.run(run.run_async())
            outcome = {"c": run.c, "error_samples": run.error_samples, "format": run.format}
    except BaseException as exc:  # noqa: BLE001 - reported by the parent, which owns the exit status
        outcome = {"crash": short_error(exc)}
    finally:
        progress.put(done[0])
        outcome["cpu_s"] = round(time.process_time() - cpu, 3)
        results.put((index, outcome))


# -- the parent ----------------------------------------------------------------------------------
def run_processes(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, processes: int,
                  on_record: Callable[[Any], None] | None = None) -> dict:
    """Run the drafting in `processes` client processes; returns the merged counters and state."""
    ctx = mp.get_context("spawn")  # never fork a process holding SQLite connections and event loops
    state = SharedRunState(ctx, options.max_cost, options.limit)
    progress, results = ctx.Queue(), ctx.Queue()
    procs = []
    for i, share in enumerate(shares(options.concurrency, processes)):
        opts = dataclasses.replace(options, concurrency=share, processes=1)
        procs.append(ctx.Process(target=_client_process, name=f"imdd-caption-llm-{i}", daemon=True,
                                 args=(i, processes, os.getpid(), str(catalog.path), str(store.root), opts, prices,
                                       state, progress, results)))
    outcomes: dict[int, dict] = {}

    def drain(block: bool) -> None:
        try:
            n = progress.get(timeout=0.2) if block else progress.get_nowait()
            for _ in range(n):
                if on_record:
                    on_record(None)
        except queue.Empty:
            pass
        while True:
            try:
                index, outcome = results.get_nowait()
            except queue.Empty:
                break
            outcomes[index] = outcome

    for p in procs:
        p.start()
    interrupts = 0
    while True:
        try:
            drain(block=True)
            if all(not p.is_alive() for p in procs):
                for _ in range(100):  # whatever the exited processes left in the pipes
                    drain(block=False)
                    if len(outcomes) == len(procs) and progress.empty():
                        break
                break
        except KeyboardInterrupt:
            interrupts += 1
            state.stop("interrupted")
            log.warning("interrupted: finishing the requests in flight (Ctrl-C again to abort)")
            if interrupts > 1:
                for p in procs:
                    p.kill()
    for p in procs:
        p.join()
    return merge(procs, outcomes, state)


def merge(procs: list, outcomes: dict[int, dict], state: SharedRunState) -> dict:
    counters: dict[str, int] = {}
    samples: list[str] = []
    fmt = FORMAT_ORDER[0]
    crashes = []
    for i, p in enumerate(procs):
        outcome = outcomes.get(i)
        if outcome is None or "crash" in outcome:
            why = outcome["crash"] if outcome else f"exit code {p.exitcode}"
            crashes.append(f"client process {i} failed: {why}")
            continue
        for k, v in outcome["c"].items():
            counters[k] = counters.get(k, 0) + v
        samples.extend(outcome["error_samples"])
        fmt = max(fmt, outcome["format"], key=FORMAT_ORDER.index)
    return {"c": counters, "error_samples": samples[:5], "format": fmt, "crashes": crashes,
            "cpu_s": [outcomes.get(i, {}).get("cpu_s") for i in range(len(procs))],
            "requests": [outcomes.get(i, {}).get("c", {}).get("requests") for i in range(len(procs))], "state": state}
