"""The LLM tables' repository classes: paid-for answers (`AnswerCache`) and Batch API batches (`BatchTable`).

The tables are created by `catalog.schema` and written through `catalog.db.transaction`; captions
built from the answers reach the records only through `Catalog.write_captions`.

`llm_answers` holds every answered request, keyed by (cache key, attempt). The cache key hashes
what decides the answer: the image's content hash, the facts sent, the prompt text, the model and
the request options. An answer is committed as it arrives (during a run by `llm_writer`'s thread,
within a millisecond or two), before the caption built from it, so a killed run re-sends only
requests whose answer was never stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog import Catalog, transaction
from ..record import Record


def cache_key(record: Record, facts: Mapping[str, Any], prompt_sha: str, model: str, options: Mapping[str, Any]) -> str:
    """sha256 of (image content hash, facts sent, prompt text hash, model, request options)."""
    payload = {"image": record.image, "mask": record.mask if options.get("vision") else None,
               "facts": facts, "prompt": prompt_sha, "model": model, "options": dict(options)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Answer:
    cache_key: str
    attempt: int
    record_key: str
    model: str
    prompt_version: str
    content: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    mode: str = "sync"
    created_at: float = 0.0


class AnswerCache:
    """The `llm_answers` table: one committed row per answered request."""

    def __init__(self, catalog: Catalog):
        self.db = catalog.db

    def get(self, key: str) -> dict[int, Answer]:
        rows = self.db.execute("SELECT cache_key, attempt, record_key, model, prompt_version, content, input_tokens, "
                               "output_tokens, cost_usd, mode, created_at FROM llm_answers WHERE cache_key = ?",
                               (key,)).fetchall()
        return {row[1]: Answer(*row) for row in rows}

    def put(self, answer: Answer) -> bool:
        """Store an answer (autocommit: durable before the caller goes on). False if already there."""
        answer.created_at = answer.created_at or time.time()
        cur = self.db.execute(
            "INSERT OR IGNORE INTO llm_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (answer.cache_key, answer.attempt, answer.record_key, answer.model, answer.prompt_version, answer.content,
             answer.input_tokens, answer.output_tokens, answer.cost_usd, answer.mode, answer.created_at))
        return cur.rowcount > 0

    def put_many(self, answers: list[Answer]) -> int:
        with transaction(self.db):
            return sum(self.put(a) for a in answers)

    def totals(self) -> dict[str, float]:
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
                              "COALESCE(SUM(cost_usd), 0) FROM llm_answers").fetchone()
        return {"answers": row[0], "input_tokens": row[1], "output_tokens": row[2], "cost_usd": round(row[3], 6)}


class BatchTable:
    """`llm_batches` and `llm_batch_items`: the Batch API's local batches (state `written` ->
    `uploaded` -> `submitted` -> `final` -> `collected`, each committed) and the requests in each."""

    def __init__(self, catalog: Catalog):
        self.db = catalog.db

    def add(self, jsonl: str, model: str, items: list[tuple[str, str, int, str]], estimated_cost: float) -> int:
        """A written batch file and its requests (custom id, cache key, attempt, record key), in one transaction."""
        now = time.time()
        with transaction(self.db):
            cur = self.db.execute("INSERT INTO llm_batches (jsonl, model, requests, state, estimated_cost_usd, "
                                  "created_at, updated_at) VALUES (?, ?, ?, 'written', ?, ?, ?)",
                                  (jsonl, model, len(items), estimated_cost, now, now))
            bid = int(cur.lastrowid)
            self.db.executemany("INSERT INTO llm_batch_items (batch, custom_id, cache_key, attempt, record_key) "
                                "VALUES (?, ?, ?, ?, ?)", [(bid, *item) for item in items])
        return bid

    def in_flight(self) -> set[tuple[str, int]]:
        """(cache key, attempt) of every request in a batch not collected yet."""
        rows = self.db.execute("SELECT i.cache_key, i.attempt FROM llm_batch_items i JOIN llm_batches b "
                               "ON b.id = i.batch WHERE b.state != 'collected'")
        return {(ck, attempt) for ck, attempt in rows}

    def in_state(self, states: tuple[str, ...], columns: str = "id") -> list[tuple]:
        """`columns` of the batches in `states`, by id."""
        if not set(columns.replace(" ", "").split(",")) <= _BATCH_COLUMNS:
            raise ValueError(f"unknown llm_batches columns: {columns}")
        return self.db.execute(f"SELECT {columns} FROM llm_batches WHERE state IN ({','.join('?' * len(states))}) "
                               "ORDER BY id", states).fetchall()

    def update(self, bid: int, **values: Any) -> None:
        """Set columns of one batch (and its `updated_at`)."""
        if not set(values) <= _BATCH_COLUMNS:
            raise ValueError(f"unknown llm_batches columns: {sorted(set(values) - _BATCH_COLUMNS)}")
        names = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE llm_batches SET {names}, updated_at = ? WHERE id = ?",
                        (*values.values(), time.time(), bid))

    def items(self, bid: int) -> dict[str, tuple[str, int, str]]:
        """custom id -> (cache key, attempt, record key) of one batch."""
        return {cid: (ck, attempt, rkey) for cid, ck, attempt, rkey in self.db.execute(
            "SELECT custom_id, cache_key, attempt, record_key FROM llm_batch_items WHERE batch = ?", (bid,))}

    def set_errors(self, errors: list[tuple[str, int, str]]) -> None:
        """Rows of (error text, batch id, custom id)."""
        self.db.executemany("UPDATE llm_batch_items SET error = ? WHERE batch = ? AND custom_id = ?", errors)

    def by_state(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM llm_batches GROUP BY state").fetchall())

    def waiting(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM llm_batches WHERE state != 'collected'").fetchone()[0]


_BATCH_COLUMNS = {"id", "jsonl", "model", "requests", "state", "input_file_id", "batch_id", "status",
                  "output_file_id", "error_file_id", "counts", "estimated_cost_usd"}
