"""Paid-for LLM answers kept in the catalog's SQLite file, and the safe caption write-back.

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

from ..catalog import Catalog
from ..record import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_answers (
    cache_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    content TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    mode TEXT NOT NULL DEFAULT 'sync',
    created_at REAL NOT NULL,
    PRIMARY KEY (cache_key, attempt)
);
CREATE INDEX IF NOT EXISTS llm_answers_record ON llm_answers(record_key);
CREATE TABLE IF NOT EXISTS llm_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jsonl TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    state TEXT NOT NULL,              -- written | uploaded | submitted | final | collected
    input_file_id TEXT,
    batch_id TEXT,
    status TEXT,                      -- the server's status (validating, in_progress, completed, ...)
    output_file_id TEXT,
    error_file_id TEXT,
    counts TEXT,
    estimated_cost_usd REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS llm_batch_items (
    batch INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (batch, custom_id)
);
CREATE INDEX IF NOT EXISTS llm_batch_items_key ON llm_batch_items(cache_key, attempt);
"""


def ensure_tables(catalog: Catalog) -> None:
    catalog.db.executescript(_SCHEMA)


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
        ensure_tables(catalog)

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
        n = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for a in answers:
                n += self.put(a)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return n

    def totals(self) -> dict[str, float]:
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
                              "COALESCE(SUM(cost_usd), 0) FROM llm_answers").fetchone()
        return {"answers": row[0], "input_tokens": row[1], "output_tokens": row[2], "cost_usd": round(row[3], 6)}


PROTECTED_SOURCES = ("expert",)
PROTECTED_STATUSES = ("verified", "rejected")


def is_protected(record: Record) -> bool:
    """Expert-written, verified or rejected captions belong to the reviewers: never overwritten."""
    return record.caption_source in PROTECTED_SOURCES or record.caption_status in PROTECTED_STATUSES


def apply_captions(catalog: Catalog, updates: Mapping[str, Mapping[str, Any]], allow_protected: bool = False) -> int:
    """Set caption fields on the records *as they are now* in one transaction.

    Re-reads each record inside the transaction, so an expert edit or a re-ingest that landed
    meanwhile is neither overwritten nor reverted. `_expect_caption` in an update: only apply it if
    the caption is still that text. Returns the number of records written.
    """
    if not updates:
        return 0
    now = time.time()
    n = 0
    db = catalog.db
    db.execute("BEGIN IMMEDIATE")
    try:
        for key, fields in updates.items():
            row = db.execute("SELECT data FROM records WHERE key = ?", (key,)).fetchone()
            if row is None:
                continue
            current = Record.model_validate_json(row[0])
            fields = dict(fields)
            expect = fields.pop("_expect_caption", None)
            if expect is not None and current.caption != expect:
                continue
            if not allow_protected and is_protected(current):
                continue
            record = current.model_copy(update=fields)
            db.execute("UPDATE records SET data = ?, caption_status = ?, updated_at = ? WHERE key = ?",
                       (record.model_dump_json(), record.caption_status, now, key))
            n += 1
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return n
