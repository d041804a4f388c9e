"""`ReviewStore`: the SQL over the review queue's tables, on a catalog's connection.

The tables themselves (and the `review_counts` triggers) are created by the catalog's schema
(`catalog.schema`); this class is the one place that reads and writes `review_queue`,
`review_config`, `review_decisions`, `review_skips`, `review_events` (append-only: rows are only
ever inserted), `review_idempotency` and `review_outbox`. Reviewers and sessions are `auth`'s.
Writes run inside `transaction()` (`catalog.db.transaction`: it joins the caller's open one), so a
service composes several of these calls into one atomic change. No business rules here: the
services (`enqueue`, `leasing`, `decisions`, `adjudication`, `outbox`) decide what to write.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Optional

from ..catalog import transaction
from .common import MAX_SKIPS, Reviewer

# The next unleased open item the reviewer has neither decided nor skipped, walking `review_queue_next`.
NEXT_SQL = ("SELECT q.key FROM review_queue q WHERE q.state = 'open' "
            "AND (q.lease_until IS NULL OR q.lease_until < :now) "
            "AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.key = q.key AND d.reviewer_id = :r) "
            "AND NOT EXISTS (SELECT 1 FROM review_skips s WHERE s.reviewer_id = :r AND s.key = q.key) "
            "ORDER BY q.state, q.tier, q.rank LIMIT 1")


class ReviewStore:
    """Rows, config, the audit log, leases, decisions, skips, idempotency answers and the outbox."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def transaction(self):
        """`catalog.transaction` on the connection: the write lock up front; joins an open transaction."""
        return transaction(self.db)

    # -- config and the audit log --------------------------------------------------------------
    def config(self) -> dict:
        return {n: json.loads(v) for n, v in self.db.execute("SELECT name, value FROM review_config")}

    def set_config(self, values: dict) -> None:
        for name, value in values.items():
            self.db.execute("INSERT OR REPLACE INTO review_config VALUES (?, ?)", (name, json.dumps(value)))

    def add_event(self, key: str, reviewer: Reviewer, action: str, data: dict, at: float) -> int:
        """Append to the audit log; returns the event id."""
        cur = self.db.execute("INSERT INTO review_events (key, reviewer_id, reviewer, action, data, at) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (key, reviewer.id, reviewer.name, action, json.dumps(data, sort_keys=True), at))
        return int(cur.lastrowid)

    def event(self, event_id: int) -> Optional[tuple[str, int, str, dict]]:
        """(key, reviewer id, action, data) of an event, or None."""
        row = self.db.execute("SELECT key, reviewer_id, action, data FROM review_events WHERE id = ?",
                              (event_id,)).fetchone()
        return (row[0], row[1], row[2], json.loads(row[3])) if row else None

    def event_data(self, event_id: int) -> dict:
        return json.loads(self.db.execute("SELECT data FROM review_events WHERE id = ?", (event_id,)).fetchone()[0])

    def latest_change(self, key: str) -> Optional[int]:
        """The id of the item's latest event that is neither an undo nor a skip."""
        return self.db.execute("SELECT MAX(id) FROM review_events WHERE key = ? AND action NOT IN ('undo', 'skip')",
                               (key,)).fetchone()[0]

    # -- queue rows -------------------------------------------------------------------------------
    def row(self, key: str) -> Optional[dict]:
        cur = self.db.execute("SELECT * FROM review_queue WHERE key = ?", (key,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    def reviewer(self, reviewer_id: int) -> Optional[Reviewer]:
        row = self.db.execute("SELECT id, name, is_admin FROM review_reviewers WHERE id = ?", (reviewer_id,)).fetchone()
        return Reviewer(row[0], row[1], bool(row[2])) if row else None

    def add_items(self, rows: list[tuple]) -> int:
        """Insert (key, source, stratum, tier, rank, required, enqueued_at, updated_at) rows not queued yet."""
        cur = self.db.executemany(  # rowcount: rows inserted, not the count triggers' updates
            "INSERT OR IGNORE INTO review_queue (key, source, stratum, tier, rank, required, "
            "enqueued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return max(cur.rowcount, 0)

    def strata(self) -> list[tuple[str, str, int, int]]:
        """(source, stratum, sampled, sampled or rest) per stratum."""
        return self.db.execute(
            "SELECT source, stratum, SUM(tier = 1), SUM(tier >= 1) FROM review_queue "
            "GROUP BY source, stratum").fetchall()

    def promote(self, source: str, stratum: str, n: int) -> int:
        """Move the stratum's `n` lowest-ranked rest items into the sample."""
        return self.db.execute(
            "UPDATE review_queue SET tier = 1 WHERE key IN (SELECT key FROM review_queue "
            "WHERE source = ? AND stratum = ? AND tier = 2 ORDER BY rank LIMIT ?)", (source, stratum, n)).rowcount

    def set_gold(self, key: str, answer: str) -> bool:
        return self.db.execute("UPDATE review_queue SET gold = ? WHERE key = ?", (answer, key)).rowcount > 0

    def size(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_queue").fetchone()[0]

    def set_outcome(self, key: str, decisions: Optional[int], state: str, outcome: Optional[str]) -> None:
        """The item's decision count (unchanged when None), state and outcome."""
        if decisions is None:
            self.db.execute("UPDATE review_queue SET state = ?, outcome = ? WHERE key = ?", (state, outcome, key))
        else:
            self.db.execute("UPDATE review_queue SET decisions = ?, state = ?, outcome = ? WHERE key = ?",
                            (decisions, state, outcome, key))

    def state_counts(self) -> dict:
        """Items per state as the triggers keep them (a handful of rows read)."""
        return dict(self.db.execute("SELECT state, n FROM review_counts").fetchall())

    def recount(self) -> dict:
        """Items per state counted from the queue itself."""
        return dict(self.db.execute("SELECT state, COUNT(*) FROM review_queue GROUP BY state").fetchall())

    def disputed_or_flagged(self, after: str, limit: int) -> list[tuple[str, str, str]]:
        """(key, state, lease token) of disputed and flagged items after `after`, by key."""
        return self.db.execute("SELECT key, state, lease_token FROM review_queue "
                               "WHERE state IN ('disputed', 'flagged') AND key > ? ORDER BY key LIMIT ?",
                               (after, limit)).fetchall()

    def page_by_priority(self, states: tuple[str, ...], cursor: tuple, limit: int = 1000) -> list[tuple]:
        """(tier, rank, key) of items in `states` after `cursor` (a previous row), in priority order."""
        marks = ",".join("?" * len(states))
        return self.db.execute(f"SELECT tier, rank, key FROM review_queue WHERE state IN ({marks}) "
                               f"AND (tier, rank, key) > (?, ?, ?) ORDER BY tier, rank, key LIMIT {int(limit)}",
                               (*states, *cursor)).fetchall()

    # -- leases -----------------------------------------------------------------------------------
    def held_lease(self, reviewer_id: int, now: float) -> Optional[str]:
        """The open item whose lease the reviewer holds now, if any."""
        row = self.db.execute("SELECT key FROM review_queue WHERE lease_reviewer = ? AND lease_until >= ? "
                              "AND state = 'open' ORDER BY leased_at LIMIT 1", (reviewer_id, now)).fetchone()
        return row[0] if row else None

    def next_key(self, reviewer_id: int, now: float) -> Optional[str]:
        row = self.db.execute(NEXT_SQL, {"now": now, "r": reviewer_id}).fetchone()
        return row[0] if row else None

    def next_plan(self) -> str:
        rows = self.db.execute("EXPLAIN QUERY PLAN " + NEXT_SQL, {"now": 0, "r": 1}).fetchall()
        return "\n".join(str(r[-1]) for r in rows)

    def leased_count(self, now: float) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_queue WHERE lease_reviewer IS NOT NULL "
                               "AND lease_until >= ?", (now,)).fetchone()[0]

    def lease(self, key: str, reviewer_id: int, now: float, until: float, leased_at: float) -> None:
        """Lease `key` to the reviewer with a fresh opaque token, dropping any other lease they hold."""
        self.db.execute("UPDATE review_queue SET lease_reviewer = NULL, lease_until = NULL, leased_at = NULL, "
                        "lease_token = NULL, version = version + 1 WHERE lease_reviewer = ? AND key != ?",
                        (reviewer_id, key))
        self.db.execute("UPDATE review_queue SET lease_reviewer = ?, lease_until = ?, leased_at = ?, lease_token = ?, "
                        "version = version + 1, updated_at = ? WHERE key = ?",
                        (reviewer_id, until, leased_at, secrets.token_urlsafe(12), now, key))

    def release(self, key: str, now: float, state: Optional[str] = None) -> None:
        """Take the lease back; the item gets a fresh token (what an admin's adjudication must quote)."""
        sets = ("lease_reviewer = NULL, lease_until = NULL, leased_at = NULL, lease_token = ?, version = version + 1, "
                "updated_at = ?")
        args: list = [secrets.token_urlsafe(12), now]
        if state:
            sets += ", state = ?"
            args.append(state)
        self.db.execute(f"UPDATE review_queue SET {sets} WHERE key = ?", (*args, key))

    # -- decisions and skips ----------------------------------------------------------------------
    def has_decided(self, key: str, reviewer_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM review_decisions WHERE key = ? AND reviewer_id = ?",
                               (key, reviewer_id)).fetchone() is not None

    def add_decision(self, key: str, reviewer_id: int, event_id: int, decision: str, final: Optional[str],
                     reason: Optional[str], at: float, spent: Optional[float], replace: bool = False) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self.db.execute(f"{verb} INTO review_decisions (key, reviewer_id, event_id, decision, final_caption, "
                        "reason, at, time_spent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, reviewer_id, event_id, decision, final, reason, at, spent))

    def decided(self, key: str) -> list[tuple[str, Optional[str], Optional[str], dict]]:
        """(decision, final caption, reason, event data) of the item's decisions in force but flags, in order."""
        rows = self.db.execute("SELECT d.decision, d.final_caption, d.reason, e.data FROM review_decisions d "
                               "JOIN review_events e ON e.id = d.event_id WHERE d.key = ? AND d.decision != 'flag' "
                               "ORDER BY d.event_id", (key,)).fetchall()
        return [(decision, final, reason, json.loads(data)) for decision, final, reason, data in rows]

    def deciders(self, key: str) -> list[str]:
        """Names of the reviewers whose decisions (but flags) are in force on the item, in order."""
        return [r for (r,) in self.db.execute(
            "SELECT v.name FROM review_decisions d JOIN review_reviewers v ON v.id = d.reviewer_id "
            "WHERE d.key = ? AND d.decision != 'flag' ORDER BY d.event_id", (key,))]

    def decisions_on(self, key: str) -> list[tuple[str, str, Optional[str], Optional[str], float]]:
        """(reviewer name, decision, final caption, reason, at) of every decision in force on the item."""
        return self.db.execute("SELECT v.name, d.decision, d.final_caption, d.reason, d.at FROM review_decisions d "
                               "JOIN review_reviewers v ON v.id = d.reviewer_id WHERE d.key = ? ORDER BY d.event_id",
                               (key,)).fetchall()

    def count_decisions(self, key: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_decisions WHERE key = ? AND decision != 'flag'",
                               (key,)).fetchone()[0]

    def decision_in_force(self, reviewer_id: int, event_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM review_decisions WHERE reviewer_id = ? AND event_id = ?",
                               (reviewer_id, event_id)).fetchone() is not None

    def remove_decision(self, reviewer_id: int, event_id: int) -> None:
        self.db.execute("DELETE FROM review_decisions WHERE reviewer_id = ? AND event_id = ?", (reviewer_id, event_id))

    def remove_flags(self, key: str) -> None:
        self.db.execute("DELETE FROM review_decisions WHERE key = ? AND decision = 'flag'", (key,))

    def reviewer_counts(self, reviewer_id: int, since: float) -> tuple[int, int]:
        """(decisions but flags in force, of them at or after `since`) of a reviewer."""
        return self.db.execute("SELECT COUNT(*), COALESCE(SUM(at >= ?), 0) FROM review_decisions WHERE reviewer_id = ? "
                               "AND decision != 'flag'", (since, reviewer_id)).fetchone()

    def add_skip(self, reviewer_id: int, key: str, event_id: int) -> None:
        """Remember the skip; keep the reviewer's latest MAX_SKIPS skips: older skipped items may come back
        to them, and the next-item query never walks past more than MAX_SKIPS of their skips (the log
        keeps every skip)."""
        self.db.execute("INSERT OR REPLACE INTO review_skips VALUES (?, ?, ?)", (reviewer_id, key, event_id))
        self.db.execute("DELETE FROM review_skips WHERE reviewer_id = :r AND event_id <= (SELECT event_id FROM "
                        "review_skips WHERE reviewer_id = :r ORDER BY event_id DESC LIMIT 1 OFFSET :n)",
                        {"r": reviewer_id, "n": MAX_SKIPS})

    def skip_in_force(self, reviewer_id: int, event_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM review_skips WHERE reviewer_id = ? AND event_id = ?",
                               (reviewer_id, event_id)).fetchone() is not None

    def remove_skip(self, reviewer_id: int, key: str) -> None:
        self.db.execute("DELETE FROM review_skips WHERE reviewer_id = ? AND key = ?", (reviewer_id, key))

    def latest_own(self, reviewer_id: int) -> Optional[int]:
        """The event id of the reviewer's latest decision or skip in force."""
        return self.db.execute("SELECT MAX(event_id) FROM (SELECT event_id FROM review_decisions WHERE reviewer_id = ? "
                               "UNION ALL SELECT event_id FROM review_skips WHERE reviewer_id = ?)",
                               (reviewer_id, reviewer_id)).fetchone()[0]

    def own_history(self, reviewer_id: int, before: int, limit: int) -> list[tuple]:
        """(event id, key, decision, final caption, reason, at) of the reviewer's decisions and skips in
        force with an event id below `before`, newest first."""
        return self.db.execute(
            "SELECT event_id, key, decision, final_caption, reason, at FROM ("
            "SELECT event_id, key, decision, final_caption, reason, at FROM review_decisions WHERE reviewer_id = :r "
            "UNION ALL SELECT event_id, key, 'skip', NULL, NULL, NULL FROM review_skips WHERE reviewer_id = :r) "
            "WHERE event_id < :b ORDER BY event_id DESC LIMIT :n",
            {"r": reviewer_id, "b": before, "n": limit}).fetchall()

    # -- idempotent retries -----------------------------------------------------------------------
    def idempotent_answer(self, reviewer_id: int, token: str) -> Optional[tuple[str, dict]]:
        """(key, answer) stored for the reviewer's `Idempotency-Key`, or None."""
        row = self.db.execute("SELECT key, response FROM review_idempotency WHERE reviewer_id = ? AND token = ?",
                              (reviewer_id, token)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def remember_answer(self, reviewer_id: int, token: str, key: str, result: dict, now: float) -> None:
        """Store the answer to an `Idempotency-Key` (answers older than a day are dropped)."""
        self.db.execute("DELETE FROM review_idempotency WHERE at < ?", (now - 86400,))
        self.db.execute("INSERT INTO review_idempotency VALUES (?, ?, ?, ?, ?)",
                        (reviewer_id, token, key, json.dumps(result, sort_keys=True), now))

    # -- the outbox -------------------------------------------------------------------------------
    def add_pending(self, event_id: int, key: str, after: dict) -> None:
        """A record change decided by `event_id`, to be written to the catalog (in the decision's transaction)."""
        self.db.execute("INSERT INTO review_outbox VALUES (?, ?, ?)", (event_id, key, json.dumps(after)))

    def first_pending(self) -> Optional[tuple[int, str, dict]]:
        row = self.db.execute("SELECT event_id, key, changes FROM review_outbox ORDER BY event_id LIMIT 1").fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def done_pending(self, event_id: int) -> None:
        self.db.execute("DELETE FROM review_outbox WHERE event_id = ?", (event_id,))

    def pending_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_outbox").fetchone()[0]
