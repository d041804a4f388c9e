"""`ReportStore`: the read-only aggregates over the review tables that `metrics` turns into coverage,
throughput, agreement, gold accuracy and `review status` (the queue's own reads and writes are
`store.ReviewStore`'s). Each method is one statement; nothing here writes."""

from __future__ import annotations

import sqlite3


class ReportStore:
    """Aggregates of `review_queue`, `review_decisions`, `review_events`, `review_reviewers` and `review_outbox`."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def queue_groups(self) -> list[tuple]:
        """(source, stratum, tier, state, items) per group."""
        return self.db.execute("SELECT source, stratum, tier, state, COUNT(*) FROM review_queue "
                               "GROUP BY source, stratum, tier, state").fetchall()

    def outcome_groups(self) -> list[tuple]:
        """(source, stratum, outcome, items) of the done items."""
        return self.db.execute("SELECT source, stratum, outcome, COUNT(*) FROM review_queue WHERE state = 'done' "
                               "GROUP BY source, stratum, outcome").fetchall()

    def decisions_by_reviewer(self) -> list[tuple]:
        """(reviewer name, decision, at, time spent) of every decision in force, by name then time."""
        return self.db.execute("SELECT r.name, d.decision, d.at, d.time_spent FROM review_decisions d "
                               "JOIN review_reviewers r ON r.id = d.reviewer_id ORDER BY r.name, d.at").fetchall()

    def skips_by_reviewer(self) -> dict[str, int]:
        """Skips per reviewer name from the log (skips less undone skips; `review_skips` keeps only the latest)."""
        return dict(self.db.execute(
            "SELECT reviewer, SUM(action = 'skip') - SUM(action = 'undo' AND json_extract(data, '$.action') = 'skip') "
            "FROM review_events WHERE action IN ('skip', 'undo') GROUP BY reviewer").fetchall())

    def double_review_answers(self) -> list[tuple]:
        """(key, reviewer id, action, event data JSON) of every accept, edit and reject event on a
        double-reviewed item, by key then event."""
        return self.db.execute(
            "SELECT e.key, e.reviewer_id, e.action, e.data FROM review_events e JOIN review_queue q ON q.key = e.key "
            "WHERE q.required >= 2 AND e.action IN ('accept', 'edit', 'reject') ORDER BY e.key, e.id").fetchall()

    def count_in_state(self, state: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_queue WHERE state = ?", (state,)).fetchone()[0]

    def gold_items(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_queue WHERE gold IS NOT NULL").fetchone()[0]

    def gold_answers(self) -> list[tuple]:
        """(reviewer name, decision, gold answer) of every decision but flags on a gold item."""
        return self.db.execute(
            "SELECT r.name, d.decision, q.gold FROM review_decisions d JOIN review_queue q ON q.key = d.key "
            "JOIN review_reviewers r ON r.id = d.reviewer_id WHERE q.gold IS NOT NULL AND d.decision != 'flag'"
        ).fetchall()

    def items_by_tier(self) -> dict[int, int]:
        return dict(self.db.execute("SELECT tier, COUNT(*) FROM review_queue GROUP BY tier").fetchall())

    def events_by_action(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT action, COUNT(*) FROM review_events GROUP BY action").fetchall())

    def pending_writes(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_outbox").fetchone()[0]

    def reviewers(self) -> list[tuple]:
        """(name, is admin, active, origin) of every reviewer, by name."""
        return self.db.execute("SELECT name, is_admin, active, origin FROM review_reviewers ORDER BY name").fetchall()

    def active_reviewers(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_reviewers WHERE active = 1").fetchone()[0]

    def items(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM review_queue").fetchone()[0]
