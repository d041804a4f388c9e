"""The review tables (`SCHEMA`), the queue's fixed vocabularies, and the write lock and transaction helper."""

from __future__ import annotations

import sqlite3
import threading

DECISIONS = ("accept", "edit", "reject", "skip", "flag")
REASONS = ("wrong_defect_label", "wrong_mask", "bad_image", "caption_unfixable")
STATES = ("open", "done", "disputed", "flagged")
TIERS = {0: "failed_checks", 1: "sample", 2: "rest"}
MAX_CAPTION_CHARS = 4000
MAX_SKIPS = 100  # a reviewer's remembered skips: the next-item walk never passes more than these
CAPTION_FIELDS = ("caption", "caption_source", "caption_status", "caption_meta")

SCHEMA = """
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

# Items per state, kept current by triggers inside the transaction that changes an item (stats read 4 rows).
COUNT_TRIGGERS = (
    "CREATE TRIGGER review_counts_insert AFTER INSERT ON review_queue "
    "BEGIN UPDATE review_counts SET n = n + 1 WHERE state = new.state; END",
    "CREATE TRIGGER review_counts_delete AFTER DELETE ON review_queue "
    "BEGIN UPDATE review_counts SET n = n - 1 WHERE state = old.state; END",
    "CREATE TRIGGER review_counts_update AFTER UPDATE OF state ON review_queue WHEN old.state != new.state "
    "BEGIN UPDATE review_counts SET n = n - 1 WHERE state = old.state; "
    "UPDATE review_counts SET n = n + 1 WHERE state = new.state; END",
)


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables; bring an older workspace's queue up to date (lease token column, state counts)."""
    db.executescript(SCHEMA)
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'review_counts_update'").fetchone() and \
            "lease_token" in {row[1] for row in db.execute("PRAGMA table_info(review_queue)")}:
        return
    with _Tx(db):
        if "lease_token" not in {row[1] for row in db.execute("PRAGMA table_info(review_queue)")}:
            db.execute("ALTER TABLE review_queue ADD COLUMN lease_token TEXT")
            # integer versions from before are void: every item gets an opaque token (adjudication quotes it)
            db.execute("UPDATE review_queue SET lease_token = lower(hex(randomblob(12)))")
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'review_counts_update'").fetchone():
            db.execute("DROP TABLE IF EXISTS review_counts")
            db.execute("CREATE TABLE review_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            db.executemany("INSERT INTO review_counts VALUES (?, 0)", [(s,) for s in STATES])
            db.execute("UPDATE review_counts SET n = (SELECT COUNT(*) FROM review_queue q "
                       "WHERE q.state = review_counts.state)")
            for trigger in COUNT_TRIGGERS:
                db.execute(trigger)


# One writer at a time inside a process (the server's threads); SQLite's BEGIN IMMEDIATE orders processes.
WRITE_LOCK = threading.RLock()


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.outer = False

    def __enter__(self):
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_):
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
