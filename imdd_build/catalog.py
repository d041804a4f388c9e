"""The workspace catalog: one SQLite file (WAL) holding every record, the quarantine and the runs."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .record import Quarantined, Record

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    split TEXT NOT NULL,
    label TEXT NOT NULL,
    caption_status TEXT,
    fingerprint TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_source ON records(source, key);
CREATE INDEX IF NOT EXISTS records_split ON records(split, key);
CREATE INDEX IF NOT EXISTS records_caption ON records(caption_status);
CREATE TABLE IF NOT EXISTS quarantine (
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    run_id INTEGER,
    at REAL NOT NULL,
    PRIMARY KEY (source, path, stage)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    options TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    summary TEXT
);
"""

# Paid-for caption work (LLM, expert) survives a re-ingest as long as the original file is the same;
# template drafts are cheap and may state a location the new geometry changed, so they are redrafted.
_CAPTION_FIELDS = ("caption", "caption_source", "caption_status", "caption_meta")


class Catalog:
    """Idempotent, crash-safe record storage keyed by the sample key."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records ---------------------------------------------------------------------------
    def fingerprint(self, key: str) -> str | None:
        row = self.db.execute("SELECT fingerprint FROM records WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def get(self, key: str) -> Record | None:
        row = self.db.execute("SELECT data FROM records WHERE key = ?", (key,)).fetchone()
        return Record.model_validate_json(row[0]) if row else None

    def upsert(self, items: Iterable[tuple[Record, str]]) -> int:
        """Insert or replace records (with their input fingerprints) in one transaction."""
        now = time.time()
        n = 0
        with self._transaction():
            for record, fingerprint in items:
                old = self.db.execute("SELECT data FROM records WHERE key = ?", (record.key,)).fetchone()
                if old:
                    previous = Record.model_validate_json(old[0])
                    if previous.sha256 == record.sha256 and previous.caption_source in ("llm", "expert"):
                        record = record.model_copy(update={f: getattr(previous, f) for f in _CAPTION_FIELDS})
                self.db.execute(
                    "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.key, record.source, record.split, record.label, record.caption_status,
                     fingerprint, record.model_dump_json(), now),
                )
                self.db.execute("DELETE FROM quarantine WHERE source = ? AND path = ? AND stage = 'ingest'",
                                (record.source, record.source_path))
                n += 1
        return n

    def set_captions(self, records: Iterable[Record]) -> int:
        """Write back records whose caption fields changed (fingerprints are kept)."""
        now = time.time()
        n = 0
        with self._transaction():
            for record in records:
                self.db.execute(
                    "UPDATE records SET data = ?, caption_status = ?, updated_at = ? WHERE key = ?",
                    (record.model_dump_json(), record.caption_status, now, record.key),
                )
                n += 1
        return n

    def iter_records(self, source: str | None = None, split: str | None = None,
                     uncaptioned: bool = False, batch: int = 2000) -> Iterator[Record]:
        """Records in key order, read in pages so memory stays flat."""
        where, args = ["key > ?"], [""]
        if source:
            where.append("source = ?")
            args.append(source)
        if split:
            where.append("split = ?")
            args.append(split)
        if uncaptioned:
            where.append("caption_status IS NULL")
        sql = f"SELECT key, data FROM records WHERE {' AND '.join(where)} ORDER BY key LIMIT {int(batch)}"
        while True:
            rows = self.db.execute(sql, args).fetchall()
            if not rows:
                return
            for _, data in rows:
                yield Record.model_validate_json(data)
            args[0] = rows[-1][0]

    def count(self, **filters: str) -> int:
        where = " AND ".join(f"{k} = ?" for k in filters) or "1"
        return self.db.execute(f"SELECT COUNT(*) FROM records WHERE {where}", tuple(filters.values())).fetchone()[0]

    def counts_by(self, *columns: str, source: str | None = None) -> dict[str, int]:
        cols = ", ".join(columns)
        where, args = ("WHERE source = ?", (source,)) if source else ("", ())
        rows = self.db.execute(f"SELECT {cols}, COUNT(*) FROM records {where} GROUP BY {cols} ORDER BY {cols}", args)
        return {"/".join("none" if v is None else str(v) for v in row[:-1]): row[-1] for row in rows}

    # -- quarantine ------------------------------------------------------------------------
    def quarantine(self, items: Iterable[Quarantined], run_id: int | None = None) -> int:
        now = time.time()
        n = 0
        with self._transaction():
            for q in items:
                self.db.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                                (q.source, q.path, q.stage, q.reason, run_id, now))
                n += 1
        return n

    def quarantined(self, source: str | None = None) -> list[Quarantined]:
        where, args = ("WHERE source = ?", (source,)) if source else ("", ())
        rows = self.db.execute(f"SELECT source, path, reason, stage FROM quarantine {where} ORDER BY source, path", args)
        return [Quarantined(source=s, path=p, reason=r, stage=st) for s, p, r, st in rows]

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, command: str, options: dict) -> int:
        cur = self.db.execute("INSERT INTO runs (command, options, started_at) VALUES (?, ?, ?)",
                              (command, json.dumps(options, sort_keys=True, default=str), time.time()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, summary: dict) -> None:
        self.db.execute("UPDATE runs SET finished_at = ?, summary = ? WHERE id = ?",
                        (time.time(), json.dumps(summary, sort_keys=True, default=str), run_id))

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
