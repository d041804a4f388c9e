"""`LeasingMixin`: leasing the next item to a reviewer, what the page shows for an item, and the
reviewer's history and the queue's progress."""

from __future__ import annotations

import json
from typing import Any, Optional

from .queue_common import NotFound, Reviewer, check_results
from .queue_schema import STATES, TIERS, WRITE_LOCK
from .queue_store import QueueStore

# The next unleased open item the reviewer has neither decided nor skipped, walking `review_queue_next`.
NEXT_SQL = ("SELECT q.key FROM review_queue q WHERE q.state = 'open' "
            "AND (q.lease_until IS NULL OR q.lease_until < :now) "
            "AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.key = q.key AND d.reviewer_id = :r) "
            "AND NOT EXISTS (SELECT 1 FROM review_skips s WHERE s.reviewer_id = :r AND s.key = q.key) "
            "ORDER BY q.state, q.tier, q.rank LIMIT 1")


class LeasingMixin(QueueStore):
    # -- leasing ---------------------------------------------------------------------------
    def next_item(self, reviewer: Reviewer) -> Optional[dict]:
        """Lease the next item to the reviewer; None when nothing is left.

        A reviewer holds one lease at a time: while it runs they get the same item and the same token
        back (asking again does not extend it), so nobody can hoard items or keep one forever.
        """
        with WRITE_LOCK:
            self.drain()
            now = self.clock()
            with self._tx():
                row = self.db.execute(
                    "SELECT key FROM review_queue WHERE lease_reviewer = ? AND lease_until >= ? "
                    "AND state = 'open' ORDER BY leased_at LIMIT 1", (reviewer.id, now)).fetchone()
                if row is None:
                    row = self.db.execute(NEXT_SQL, {"now": now, "r": reviewer.id}).fetchone()
                    if not row:
                        return None
                    self._lease(row[0], reviewer, now)
            return self.item(row[0])

    def next_plan(self) -> str:
        """EXPLAIN QUERY PLAN of the next-item query (tests assert it walks the index)."""
        rows = self.db.execute("EXPLAIN QUERY PLAN " + NEXT_SQL, {"now": 0, "r": 1}).fetchall()
        return "\n".join(str(r[-1]) for r in rows)

    def item(self, key: str, with_lease: bool = True, seen: Optional[dict] = None) -> dict:
        """What the page shows for an item: draft, metadata, checks (never another reviewer's decision).

        `seen` (a history entry's event data) shows the item as the reviewer saw it when deciding: the
        draft, its source and labels then, and no state, so a later outcome reveals nothing.
        """
        row, record = self._load(key)
        if seen is not None:
            before = seen.get("labels_before") or {}
            record = record.model_copy(update={
                "caption": seen.get("draft"), "caption_source": seen.get("draft_source", record.caption_source),
                "caption_status": "draft", "label": before.get("label", record.label),
                "defect_types": before.get("defect_types", record.defect_types)})
        return {
            "key": key,
            "caption": record.caption,
            "image_url": f"/api/items/{key}/image",
            "mask_url": f"/api/items/{key}/mask" if record.mask else None,
            "version": row["lease_token"] if with_lease else None,
            "lease_until": row["lease_until"] if with_lease else None,
            "required_reviews": row["required"],
            "priority": TIERS[row["tier"]],
            "state": row["state"] if seen is None else None,
            "metadata": {
                "source": record.source, "domain": record.domain, "product": record.product,
                "split": record.split, "label": record.label, "defect_types": record.defect_types,
                "source_labels": record.source_labels, "caption_source": record.caption_source,
                "caption_status": record.caption_status, "boxes": [b.model_dump() for b in record.boxes],
                "attributes": record.attributes.model_dump(), "license": record.license,
                "model": (record.caption_meta or {}).get("model"),
            },
            "checks": check_results(record),
        }

    # -- history and progress --------------------------------------------------------------
    def history(self, reviewer: Reviewer, before: Optional[int] = None, limit: int = 1) -> list[dict]:
        """The reviewer's own decisions in force, newest first (the page's `previous`)."""
        rows = self.db.execute(
            "SELECT event_id, key, decision, final_caption, reason, at FROM ("
            "SELECT event_id, key, decision, final_caption, reason, at FROM review_decisions WHERE reviewer_id = :r "
            "UNION ALL SELECT event_id, key, 'skip', NULL, NULL, NULL FROM review_skips WHERE reviewer_id = :r) "
            "WHERE event_id < :b ORDER BY event_id DESC LIMIT :n",
            {"r": reviewer.id, "b": before if before is not None else 1 << 62, "n": max(1, min(int(limit), 50))})
        out = []
        for event_id, key, decision, final, reason, at in rows.fetchall():
            seen = json.loads(self.db.execute("SELECT data FROM review_events WHERE id = ?", (event_id,)).fetchone()[0])
            try:
                item = self.item(key, with_lease=False, seen=seen)
            except NotFound:
                continue
            out.append({"event_id": event_id, "key": key, "decision": decision, "final_caption": final,
                        "reason": reason, "at": at, "item": item})
        return out

    def progress(self, reviewer: Optional[Reviewer] = None) -> dict:
        """Items per state (kept current by triggers: a handful of rows read), leases, and the reviewer's own."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self.db.execute("SELECT state, n FROM review_counts").fetchall())
        total = sum(counts.values())
        out: dict[str, Any] = {"items": total, **counts,
                               "leased": self.db.execute("SELECT COUNT(*) FROM review_queue WHERE lease_reviewer IS NOT NULL "
                                                         "AND lease_until >= ?",
                                                         (self.clock(),)).fetchone()[0]}
        if reviewer is not None:
            since = self.clock() - 86400
            mine, today = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(at >= ?), 0) FROM review_decisions WHERE reviewer_id = ? "
                "AND decision != 'flag'", (since, reviewer.id)).fetchone()
            out["me"] = {"name": reviewer.name, "decisions": mine, "last_24h": today}
        return out

    def recount(self) -> dict:
        """Items per state counted from the queue itself (what `review_counts` must equal)."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self.db.execute("SELECT state, COUNT(*) FROM review_queue GROUP BY state").fetchall())
        return counts
