"""`caption --llm --batch submit|status|collect`: the OpenAI Batch API for million-record runs.

submit  writes the chat-completion requests of every record that needs one as JSONL files under
        `<workspace>/llm-batches/` (at most 50,000 requests / ~190 MB each), uploads them and creates
        the batches. A request already in a batch that is not collected yet is not written again;
        a file written or uploaded by a killed submit is uploaded/created by the next one.
status  refreshes the server's status of every batch not collected yet.
collect downloads the output of finished batches into `llm_answers` (the same cache as the
        synchronous path; an answer already there is kept) and writes the captions. Drafts that
        failed the checks need their one retry with the reasons: the next `submit` sends it.

Every step is idempotent: running any of them twice changes nothing the first did not.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from ..store import Store
from .cache import Answer, BatchTable
from .llm import LLMOptions, LLMRun, iter_candidates, make_client, next_step, request_body
from .pricing import Prices
from .prompt import build_messages, retry_messages

MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 1024 * 1024
TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"


def _now() -> float:
    return time.time()


def _upload_and_create(batches: BatchTable, client: Any, row: tuple) -> None:
    """Carry one local batch forward: written -> uploaded -> submitted (each state committed)."""
    bid, path, state, file_id = row
    if state == "written":
        with open(path, "rb") as fh:
            file_id = client.files.create(file=fh, purpose="batch").id
        batches.update(bid, state="uploaded", input_file_id=file_id)
        state = "uploaded"
    if state == "uploaded":
        batch = client.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h",
                                      metadata={"imdd_local_batch": str(bid)})
        batches.update(bid, state="submitted", batch_id=batch.id, status=batch.status)


def submit(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, out_dir: Path,
           client: Any = None, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> dict:
    batches = BatchTable(catalog)
    run = LLMRun(catalog, store, options, prices)
    client = client or make_client(options, async_client=False)
    for row in batches.in_state(("written", "uploaded"), "id, jsonl, state, input_file_id"):
        _upload_and_create(batches, client, row)  # finish what a killed submit left
    pending = batches.in_flight()
    out_dir.mkdir(parents=True, exist_ok=True)
    created: list[int] = []
    chunk: list[tuple[str, str, int, str]] = []  # (custom_id, cache_key, attempt, record_key)
    lines: list[bytes] = []
    size = 0
    est_total = 0.0
    chunk_cost = 0.0
    counts = {"requests": 0, "in_flight": 0, "applied_from_cache": 0}

    def close_chunk() -> None:
        nonlocal lines, chunk, size, chunk_cost
        if not chunk:
            return
        path = out_dir / f"batch-{int(_now() * 1000)}-{len(created):04d}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(lines))
        tmp.replace(path)
        bid = batches.add(str(path), options.model, chunk, chunk_cost)
        _upload_and_create(batches, client, (bid, str(path), "written", None))
        created.append(bid)
        lines, chunk, size, chunk_cost = [], [], 0, 0.0

    seen: set[str] = set()
    stopped: str | None = None
    for record in iter_candidates(catalog, options.source, options.where):
        prepared = run.prepare(record)
        if prepared is None:
            continue
        record_facts, ck = prepared
        step = next_step(record, run.cache.get(ck))
        if step.done:
            run.finish(record, step, ck, fresh=False)
            counts["applied_from_cache"] += 1
            continue
        if (ck, step.attempt) in pending:
            counts["in_flight"] += 1
            continue
        if options.limit is not None and counts["requests"] >= options.limit:
            stopped = "limit"
            break
        custom_id = f"{ck[:40]}-{step.attempt}"
        if custom_id in seen:
            continue
        messages = build_messages(record, record_facts, run.prompt, run.images(record), options.image_detail)
        if step.attempt == 2:
            messages = retry_messages(messages, step.previous, step.reasons, run.prompt)
        est = prices.cost(*run.estimate(messages), batch=True)
        if options.max_cost is not None and est_total + est > options.max_cost:
            stopped = "max_cost"
            break
        line = (json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                            "body": request_body(options, messages, options.response_format)},
                           ensure_ascii=False) + "\n").encode()
        if chunk and (len(chunk) >= max_requests or size + len(line) > max_bytes):
            close_chunk()
        seen.add(custom_id)
        chunk.append((custom_id, ck, step.attempt, record.key))
        lines.append(line)
        size += len(line)
        est_total += est
        chunk_cost += est
        counts["requests"] += 1
    close_chunk()
    run.flush()
    return {"command": "caption", "mode": "llm-batch", "action": "submit", "model": options.model,
            "batches": created, **counts, "estimated_cost_usd": round(est_total, 6), "stopped": stopped,
            "kept": run.c["kept"], "already": run.c["already"]}


def _refresh(batches: BatchTable, client: Any) -> list[dict]:
    out = []
    for bid, batch_id, state in batches.in_state(("submitted", "final"), "id, batch_id, state"):
        b = client.batches.retrieve(batch_id)
        counts = getattr(b, "request_counts", None)
        counts_d = counts.model_dump() if counts is not None and hasattr(counts, "model_dump") else None
        new_state = "final" if b.status in TERMINAL else state
        batches.update(bid, status=b.status, output_file_id=getattr(b, "output_file_id", None),
                       error_file_id=getattr(b, "error_file_id", None), counts=json.dumps(counts_d), state=new_state)
        out.append({"local_id": bid, "batch_id": batch_id, "status": b.status, "counts": counts_d})
    return out


def status(catalog: Catalog, options: LLMOptions, client: Any = None) -> dict:
    batches = BatchTable(catalog)
    client = client or make_client(options, async_client=False)
    refreshed = _refresh(batches, client)
    by_state = batches.by_state()
    return {"command": "caption", "mode": "llm-batch", "action": "status", "batches": refreshed,
            "by_state": by_state}


def _file_lines(client: Any, file_id: str | None) -> list[dict]:
    if not file_id:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def collect(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, client: Any = None) -> dict:
    batches = BatchTable(catalog)
    client = client or make_client(options, async_client=False)
    _refresh(batches, client)
    run = LLMRun(catalog, store, options, prices)
    counts = {"batches_collected": 0, "answers": 0, "request_errors": 0, "captioned": 0, "needs_retry": 0}
    for bid, output_id, error_id in batches.in_state(("final",), "id, output_file_id, error_file_id"):
        items = batches.items(bid)
        answers, errors = [], []
        for line in _file_lines(client, output_id) + _file_lines(client, error_id):
            item = items.get(line.get("custom_id"))
            if item is None:
                continue
            ck, attempt, rkey = item
            resp = line.get("response") or {}
            body = resp.get("body") or {}
            if resp.get("status_code") == 200 and body.get("choices"):
                usage = body.get("usage") or {}
                n_in, n_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                answers.append(Answer(cache_key=ck, attempt=attempt, record_key=rkey, model=options.model,
                                      prompt_version=run.prompt.version,
                                      content=(body["choices"][0].get("message") or {}).get("content"),
                                      input_tokens=n_in, output_tokens=n_out, cost_usd=prices.cost(n_in, n_out, True),
                                      mode="batch", created_at=body.get("created") or _now()))
            else:
                why = line.get("error") or body.get("error") or {"status_code": resp.get("status_code")}
                errors.append((json.dumps(why)[:500], bid, line.get("custom_id")))
        counts["answers"] += run.cache.put_many(answers)
        counts["request_errors"] += len(errors)
        batches.set_errors(errors)
        for rkey in sorted({item[2] for item in items.values()}):
            record = catalog.get(rkey)
            if record is None:
                continue
            prepared = run.prepare(record)
            if prepared is None:
                continue
            step = next_step(record, run.cache.get(prepared[1]))
            if step.done:
                run.finish(record, step, prepared[1], fresh=True)
                counts["captioned"] += 1
            elif step.attempt == 2:
                counts["needs_retry"] += 1
        run.flush()
        batches.update(bid, state="collected")
        counts["batches_collected"] += 1
    totals = run.c
    waiting = batches.waiting()
    return {"command": "caption", "mode": "llm-batch", "action": "collect", **counts,
            "passed": totals["passed"], "failed_checks": totals["failed_checks"], "batches_waiting": waiting,
            "next": "run `caption --llm --batch submit` again to send the retries" if counts["needs_retry"] else None}
