"""The review tables (`SCHEMA`), the queue's fixed vocabularies, and the write lock and transaction helper."""

from __future__ import annotations

import sqlite3
import threading

DECISIONS = ("accept", "edit", "reject", "skip", "flag")
REASONS = ("wrong_defect_label", "wrong_mask", "bad_image", "caption_unfixable")
STATES = ("open", "done", "disputed", "flagged")
TIERS = {0: "failed_checks", 1: "sample", 2: "rest"}
MAX_CAPTION_CHARS = 4000
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
CREATE TABLE IF NOT EXISTS review_outbox (
    event_id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    changes TEXT NOT NULL
);
"""

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
