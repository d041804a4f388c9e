"""Every table of the catalog file, in one place, as numbered migrations checked at open.

`meta.schema_version` says which migrations a file has. `migrate` runs at every `Catalog` open: a
file at the current version costs one read; an older one is brought up to date in one transaction
(so two processes opening it at once do it once); a newer one (written by a later imdd-build) is
refused with a one-line error instead of being written by code that does not know its tables.

Owners of the tables (who reads and writes them, always through `db.transaction`):

| tables | owner |
|---|---|
| `meta`, `records`, `quarantine`, `runs` | `catalog.core.Catalog` |
| `image_hashes`, `dedupe_groups`, `split_moves` | `catalog.hashes.DedupeTables` (`Catalog.dedupe`) |
| `llm_answers`, `llm_batches`, `llm_batch_items` | `caption.cache.AnswerCache`, `caption.cache.BatchTable` |
| `review_*` | `review.store.ReviewStore`, `review.auth` (reviewers, sessions), `review.report_store.ReportStore` (read-only totals) |

To change a table: append a migration (never edit a released one) and bump `SCHEMA_VERSION`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..errors import RunError
from .db import transaction

SCHEMA_VERSION = 3

# The review queue's item states (`review_counts` holds one row per state).
REVIEW_STATES = ("open", "done", "disputed", "flagged")


class SchemaError(RunError):
    """The catalog file's schema is one this code cannot use (written by a newer imdd-build)."""


_V1_RECORDS = """
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

# Version 2 gathers what version-1 files got later without a version bump (the caption-status
# indexes) and the tables other stages used to create on first use; every statement is idempotent,
# since a version-1 file may already have any of them.
_V2_INDEXES = """
DROP INDEX IF EXISTS records_caption;
CREATE INDEX IF NOT EXISTS records_caption_key ON records(caption_status, key);
CREATE INDEX IF NOT EXISTS records_source_caption ON records(source, caption_status, key);
CREATE INDEX IF NOT EXISTS records_source_split_label ON records(source, split, label);
"""

_V2_DEDUPE = """
CREATE TABLE IF NOT EXISTS image_hashes (
    image TEXT PRIMARY KEY,      -- store reference of the normalized image
    pixel_sha256 TEXT NOT NULL,  -- sha256 of the decoded RGB pixels
    phash TEXT NOT NULL          -- 64-bit DCT perceptual hash, 16 hex digits
);
CREATE TABLE IF NOT EXISTS dedupe_groups (
    group_id INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, radius INTEGER NOT NULL,
    leakage INTEGER NOT NULL, dropped INTEGER NOT NULL, PRIMARY KEY (group_id, key));
"""

_V2_LLM = """
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

_V2_REVIEW = """
CREATE TABLE IF NOT EXISTS review_reviewers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT UNIQUE,
    is_admin INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    origin TEXT NOT NULL DEFAULT 'local',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS review_sessions (
    id_hash TEXT PRIMARY KEY,
    reviewer_id INTEGER NOT NULL,
    csrf TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS review_config (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS review_queue (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    stratum TEXT NOT NULL,
    tier INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    required INTEGER NOT NULL DEFAULT 1,
    gold TEXT,
    state TEXT NOT NULL DEFAULT 'open',
    decisions INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    lease_reviewer INTEGER,
    lease_until REAL,
    leased_at REAL,
    version INTEGER NOT NULL DEFAULT 1,
    lease_token TEXT,
    enqueued_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS review_queue_next ON review_queue(state, tier, rank);
CREATE INDEX IF NOT EXISTS review_queue_lease ON review_queue(lease_reviewer, lease_until);
CREATE INDEX IF NOT EXISTS review_queue_stratum ON review_queue(source, stratum, tier, rank);
CREATE TABLE IF NOT EXISTS review_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    reviewer_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    decision TEXT NOT NULL,
    final_caption TEXT,
    reason TEXT,
    at REAL NOT NULL,
    time_spent REAL,
    UNIQUE (key, reviewer_id)
);
CREATE INDEX IF NOT EXISTS review_decisions_reviewer ON review_decisions(reviewer_id, event_id);
CREATE TABLE IF NOT EXISTS review_skips (
    reviewer_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (reviewer_id, key)
);
CREATE INDEX IF NOT EXISTS review_skips_reviewer ON review_skips(reviewer_id, event_id);
CREATE TABLE IF NOT EXISTS review_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    reviewer_id INTEGER,
    reviewer TEXT NOT NULL,
    action TEXT NOT NULL,
    data TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS review_events_key ON review_events(key, id);
CREATE INDEX IF NOT EXISTS review_events_reviewer ON review_events(reviewer_id, id);
CREATE TRIGGER IF NOT EXISTS review_events_no_update BEFORE UPDATE ON review_events
    BEGIN SELECT RAISE(ABORT, 'review_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS review_events_no_delete BEFORE DELETE ON review_events
    BEGIN SELECT RAISE(ABORT, 'review_events is append-only'); END;
CREATE TABLE IF NOT EXISTS review_idempotency (
    reviewer_id INTEGER NOT NULL,
    token TEXT NOT NULL,
    key TEXT NOT NULL,
    response TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (reviewer_id, token)
);
CREATE INDEX IF NOT EXISTS review_idempotency_at ON review_idempotency(at);
CREATE TABLE IF NOT EXISTS review_outbox (
    event_id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    changes TEXT NOT NULL
);
"""

# Version 3: the seeded records the last dedupe moved into their near-duplicate group's split (one row
# per moved record; its record says `split_origin: seeded-group`), so the next run can say how many
# records changed split since.
_V3_SPLIT_MOVES = """
CREATE TABLE IF NOT EXISTS split_moves (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    sample_split TEXT NOT NULL,  -- the record's own seeded draw
    split TEXT NOT NULL,         -- its group's split, where it is published
    group_key TEXT NOT NULL      -- the smallest seeded key of its group (what the draw orders by)
);
CREATE INDEX IF NOT EXISTS split_moves_source ON split_moves(source, key);
"""

# Items per state, kept current by triggers inside the transaction that changes an item (stats read 4 rows).
_REVIEW_COUNT_TRIGGERS = (
    "CREATE TRIGGER review_counts_insert AFTER INSERT ON review_queue "
    "BEGIN UPDATE review_counts SET n = n + 1 WHERE state = new.state; END",
    "CREATE TRIGGER review_counts_delete AFTER DELETE ON review_queue "
    "BEGIN UPDATE review_counts SET n = n - 1 WHERE state = old.state; END",
    "CREATE TRIGGER review_counts_update AFTER UPDATE OF state ON review_queue WHEN old.state != new.state "
    "BEGIN UPDATE review_counts SET n = n - 1 WHERE state = old.state; "
    "UPDATE review_counts SET n = n + 1 WHERE state = new.state; END",
)


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run the statements of `script` one by one (`executescript` would commit the open transaction)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement.strip()[:60]!r}")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _v1(db: sqlite3.Connection) -> None:
    _script(db, _V1_RECORDS)


def _v2(db: sqlite3.Connection) -> None:
    _script(db, _V2_INDEXES + _V2_DEDUPE + _V2_LLM + _V2_REVIEW)
    if "lease_token" not in _columns(db, "review_queue"):
        db.execute("ALTER TABLE review_queue ADD COLUMN lease_token TEXT")
        # integer versions from before are void: every item gets an opaque token (adjudication quotes it)
        db.execute("UPDATE review_queue SET lease_token = lower(hex(randomblob(12)))")
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'review_counts_update'").fetchone():
        db.execute("DROP TABLE IF EXISTS review_counts")
        db.execute("CREATE TABLE review_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        db.executemany("INSERT INTO review_counts VALUES (?, 0)", [(s,) for s in REVIEW_STATES])
        db.execute("UPDATE review_counts SET n = (SELECT COUNT(*) FROM review_queue q "
                   "WHERE q.state = review_counts.state)")
        for trigger in _REVIEW_COUNT_TRIGGERS:
            db.execute(trigger)


def _v3(db: sqlite3.Connection) -> None:
    _script(db, _V3_SPLIT_MOVES)


# MIGRATIONS[i] brings a file from version i to version i + 1.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3)
assert len(MIGRATIONS) == SCHEMA_VERSION


def version(db: sqlite3.Connection) -> int:
    """The file's schema version (0 for a new, empty file)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return 0
    row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Bring the file to `SCHEMA_VERSION` (one transaction); returns the version it had.

    Raises `SchemaError` for a file newer than this code."""
    found = version(db)
    if found == SCHEMA_VERSION:
        return found
    with transaction(db):
        found = version(db)  # another process may have migrated it meanwhile
        if found > SCHEMA_VERSION:
            raise SchemaError(f"{path}: catalog schema version {found} is newer than this imdd-build "
                              f"understands ({SCHEMA_VERSION}); upgrade imdd-build to open it")
        for step in MIGRATIONS[found:]:
            step(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return found
