"""LLM caption drafting against OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

One async loop per client process, `concurrency` workers pulling records from a bounded queue
(memory stays flat at any catalog size); `--processes N` runs N such processes over hash partitions
of the records, sharing one budget (`llm_pool`). Per record: the cached answers decide the next
step (`next_step`), so a rerun after a crash, a kill or `--max-cost` sends only requests that were
never answered. Every answer is committed to `llm_answers` as it arrives, by a writer thread in
group commits (`llm_writer`); captions are written back in batches (they can always be rebuilt
from the answers). A draft that fails the checks is retried once with the reasons;
if it still fails it is kept as an LLM draft with its reasons and `review_priority` 0.

The API key comes from OPENAI_API_KEY only; it is handed to the client and never stored, logged
or printed by this module.

Entry point `caption_llm` here; the parts live in `llm_client` (options, client, retries),
`llm_records` (selection, next step, provenance), `llm_run` (the async run, `LLMRun`), `llm_state`
(budget, limit, pause and stop, per process or shared) and `llm_pool` (the client processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..catalog import Catalog
from ..record import Record
from ..store import Store
from .llm_client import (  # noqa: F401  (re-exported: imported from imdd_build.caption.llm)
    CONNECTIONS_PER_CLIENT,
    DEFAULT_MODEL,
    FatalError,
    LLMOptions,
    RecordError,
    backoff,
    classify,
    make_client,
    make_clients,
    request_body,
    retry_after_seconds,
    short_error,
    transport_name,
)
from .llm_records import Step, caption_fields, evaluate, iter_candidates, next_step  # noqa: F401
from .llm_pool import auto_processes, run_processes
from .llm_run import EST_OUTPUT_TOKENS, LLMRun  # noqa: F401
from .pricing import Prices
from ..errors import RunError


def caption_llm(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, client: Any = None,
                on_record: Callable[[Record], None] | None = None) -> dict:
    """Draft LLM captions for the selected records; returns the run summary."""
    if options.max_cost is not None and not prices.known and not options.dry_run:
        raise RunError(f"--max-cost needs a price for model {options.model!r}: pass --price-in/--price-out "
                         "or --prices FILE")
    run = LLMRun(catalog, store, options, prices, client=client, on_record=on_record)
    base = {"command": "caption", "mode": "llm", "model": options.model, "prompt_version": run.prompt.version,
            "prices": prices.summary(), "dry_run": options.dry_run}
    if options.dry_run:
        summary = {**base, **run.dry_run(), "kept": run.c["kept"], "already": run.c["already"]}
    else:
        processes = auto_processes(options.concurrency) if options.processes == 0 else options.processes
        processes = 1 if client is not None else max(1, min(processes, options.concurrency))
        started = time.perf_counter()
        cpu = time.process_time()
        if processes == 1:
            run.clients = list(client) if isinstance(client, (list, tuple)) else [client] if client else make_clients(options)
            asyncio.run(run.run_async())
            counters, samples, fmt, state, crashes = run.c, run.error_samples, run.format, run.state, []
            client_cpu, per_process = [round(time.process_time() - cpu, 3)], [run.c["requests"]]
        else:
            # a missing key or a bad --where fails here, once, not in N processes
            make_client(options, async_client=False).close()
            next(iter_candidates(catalog, options.source, options.where, page=1), None)
            merged = run_processes(catalog, store, options, prices, processes, on_record=on_record)
            counters = {**run.c, **merged["c"]}  # the parent's own counters are all zero
            samples, fmt, state, crashes = merged["error_samples"], merged["format"], merged["state"], merged["crashes"]
            client_cpu, per_process = merged["cpu_s"], merged["requests"]
        elapsed = time.perf_counter() - started
        summary = {**base, **counters, "cost_usd": round(state.spent, 6),
                   "stopped": state.stopped or ("limit" if state.limited else None),
                   "error": state.fatal or ("; ".join(crashes) if crashes else None) or nothing_done(counters, samples),
                   "error_samples": samples, "elapsed_s": round(elapsed, 3),
                   "requests_per_s": round(counters["requests"] / elapsed, 2) if elapsed > 0 else None,
                   "response_format": fmt, "processes": processes, "transport": transport_name(options),
                   "client_cpu_s": client_cpu, "requests_per_process": per_process}
    summary["records"] = catalog.count()
    summary["uncaptioned"] = catalog.count_uncaptioned()
    return summary


def nothing_done(counters: dict, samples: list[str]) -> str | None:
    """The run-level error of a run whose every request failed: nothing captioned, only errors."""
    if counters["captioned"] or not counters["errors"]:
        return None
    first = samples[0].split(": ", 1)[-1] if samples else "unknown"
    return f"nothing captioned: {counters['errors']} record(s) failed; the first because {first}"
