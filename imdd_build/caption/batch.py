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
from .cache import Answer, ensure_tables
from .llm import LLMOptions, LLMRun, iter_candidates, make_client, next_step, request_body
from .pricing import Prices
from .prompt import build_messages, retry_messages

MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 1024 * 1024
TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"


def _now() -> float:
    return time.time()


def _pending(catalog: Catalog) -> set[tuple[str, int]]:
    rows = catalog.db.execute("SELECT i.cache_key, i.attempt FROM llm_batch_items i JOIN llm_batches b "
                              "ON b.id = i.batch WHERE b.state != 'collected'")
    return {(ck, attempt) for ck, attempt in rows}


def _upload_and_create(catalog: Catalog, client: Any, row: tuple) -> None:
    """Carry one local batch forward: written -> uploaded -> submitted (each state committed)."""
    bid, path, state, file_id = row
    db = catalog.db
    if state == "written":
        with open(path, "rb") as fh:
            file_id = client.files.create(file=fh, purpose="batch").id
        db.execute("UPDATE llm_batches SET state = 'uploaded', input_file_id = ?, updated_at = ? WHERE id = ?",
                   (file_id, _now(), bid))
        state = "uploaded"
    if state == "uploaded":
        batch = client.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h",
                                      metadata={"imdd_local_batch": str(bid)})
        db.execute("UPDATE llm_batches SET state = 'submitted', batch_id = ?, status = ?, updated_at = ? WHERE id = ?",
                   (batch.id, batch.status, _now(), bid))


def submit(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, out_dir: Path,
           client: Any = None, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> dict:
    ensure_tables(catalog)
    run = LLMRun(catalog, store, options, prices)
    client = client or make_client(options, async_client=False)
    for row in catalog.db.execute("SELECT id, jsonl, state, input_file_id FROM llm_batches "
                                  "WHERE state IN ('written', 'uploaded') ORDER BY id").fetchall():
        _upload_and_create(catalog, client, row)  # finish what a killed submit left
    pending = _pending(catalog)
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
        db = catalog.db
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute("INSERT INTO llm_batches (jsonl, model, requests, state, estimated_cost_usd, created_at, "
                         "updated_at) VALUES (?, ?, ?, 'written', ?, ?, ?)",
                         (str(path), options.model, len(chunk), chunk_cost, _now(), _now()))
        bid = int(cur.lastrowid)
        db.executemany("INSERT INTO llm_batch_items (batch, custom_id, cache_key, attempt, record_key) "
                       "VALUES (?, ?, ?, ?, ?)", [(bid, *item) for item in chunk])
        db.execute("COMMIT")
        _upload_and_create(catalog, client, (bid, str(path), "written", None))
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


def _refresh(catalog: Catalog, client: Any) -> list[dict]:
    out = []
    rows = catalog.db.execute("SELECT id, batch_id, state FROM llm_batches WHERE state IN ('submitted', 'final') "
                              "ORDER BY id").fetchall()
    for bid, batch_id, state in rows:
        b = client.batches.retrieve(batch_id)
        counts = getattr(b, "request_counts", None)
        counts_d = counts.model_dump() if counts is not None and hasattr(counts, "model_dump") else None
        new_state = "final" if b.status in TERMINAL else state
        catalog.db.execute("UPDATE llm_batches SET status = ?, output_file_id = ?, error_file_id = ?, counts = ?, "
                           "state = ?, updated_at = ? WHERE id = ?",
                           (b.status, getattr(b, "output_file_id", None), getattr(b, "error_file_id", None),
                            json.dumps(counts_d), new_state, _now(), bid))
        out.append({"local_id": bid, "batch_id": batch_id, "status": b.status, "counts": counts_d})
    return out


def status(catalog: Catalog, options: LLMOptions, client: Any = None) -> dict:
    ensure_tables(catalog)
    client = client or make_client(options, async_client=False)
    refreshed = _refresh(catalog, client)
    by_state = dict(catalog.db.execute("SELECT state, COUNT(*) FROM llm_batches GROUP BY state").fetchall())
    return {"command": "caption", "mode": "llm-batch", "action": "status", "batches": refreshed,
            "by_state": by_state}


def _file_lines(client: Any, file_id: str | None) -> list[dict]:
    if not file_id:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def collect(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, client: Any = None) -> dict:
    ensure_tables(catalog)
    client = client or make_client(options, async_client=False)
    _refresh(catalog, client)
    run = LLMRun(catalog, store, options, prices)
    counts = {"batches_collected": 0, "answers": 0, "request_errors": 0, "captioned": 0, "needs_retry": 0}
    rows = catalog.db.execute("SELECT id, output_file_id, error_file_id FROM llm_batches WHERE state = 'final' "
                              "ORDER BY id").fetchall()
    for bid, output_id, error_id in rows:
        items = {cid: (ck, attempt, rkey) for cid, ck, attempt, rkey in catalog.db.execute(
            "SELECT custom_id, cache_key, attempt, record_key FROM llm_batch_items WHERE batch = ?", (bid,))}
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
        catalog.db.executemany("UPDATE llm_batch_items SET error = ? WHERE batch = ? AND custom_id = ?", errors)
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
        catalog.db.execute("UPDATE llm_batches SET state = 'collected', updated_at = ? WHERE id = ?", (_now(), bid))
        counts["batches_collected"] += 1
    totals = run.c
    waiting = catalog.db.execute("SELECT COUNT(*) FROM llm_batches WHERE state != 'collected'").fetchone()[0]
    return {"command": "caption", "mode": "llm-batch", "action": "collect", **counts,
            "passed": totals["passed"], "failed_checks": totals["failed_checks"], "batches_waiting": waiting,
            "next": "run `caption --llm --batch submit` again to send the retries" if counts["needs_retry"] else None}
