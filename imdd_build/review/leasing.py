"""`LeaseService`: leasing the next item to a reviewer, what the page shows for an item, and the
reviewer's history and the queue's progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ..catalog import Catalog
from ..record import Record
from .common import STATES, TIERS, WRITE_LOCK, NotFound, Reviewer, check_results
from .outbox import Outbox
from .store import ReviewStore


class LeaseService:
    """One lease per reviewer at a time; items as the page shows them."""

    def __init__(self, store: ReviewStore, catalog: Catalog, outbox: Outbox, clock: Callable[[], float],
                 lease_seconds: float):
        self.store = store
        self.catalog = catalog
        self.outbox = outbox
        self.clock = clock
        self.lease_seconds = float(lease_seconds)

    def load(self, key: str) -> tuple[dict, Record]:
        """The queue row and the record of an item; NotFound when either is missing."""
        row = self.store.row(key)
        record = self.catalog.get(key)
        if row is None or record is None:
            raise NotFound(key)
        return row, record

    def lease(self, key: str, reviewer: Reviewer, now: float) -> None:
        """Lease `key` to the reviewer for `lease_seconds` (their one lease)."""
        self.store.lease(key, reviewer.id, now, now + self.lease_seconds, now)

    def next_item(self, reviewer: Reviewer) -> Optional[dict]:
        """Lease the next item to the reviewer; None when nothing is left.

        A reviewer holds one lease at a time: while it runs they get the same item and the same token
        back (asking again does not extend it), so nobody can hoard items or keep one forever.
        """
        with WRITE_LOCK:
            self.outbox.drain()
            now = self.clock()
            with self.store.transaction():
                key = self.store.held_lease(reviewer.id, now)
                if key is None:
                    key = self.store.next_key(reviewer.id, now)
                    if key is None:
                        return None
                    self.lease(key, reviewer, now)
            return self.item(key)

    def next_plan(self) -> str:
        """EXPLAIN QUERY PLAN of the next-item query (tests assert it walks the index)."""
        return self.store.next_plan()

    def item(self, key: str, with_lease: bool = True, seen: Optional[dict] = None) -> dict:
        """What the page shows for an item: draft, metadata, checks (never another reviewer's decision).

        `seen` (a history entry's event data) shows the item as the reviewer saw it when deciding: the
        draft, its source and labels then, and no state, so a later outcome reveals nothing.
        """
        row, record = self.load(key)
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

    def holds_lease(self, key: str, reviewer: Reviewer) -> bool:
        """Does the reviewer hold the item's lease now?"""
        row = self.store.row(key)
        return row is not None and row["lease_reviewer"] == reviewer.id and (row["lease_until"] or 0) >= self.clock()

    # -- history and progress --------------------------------------------------------------
    def history(self, reviewer: Reviewer, before: Optional[int] = None, limit: int = 1) -> list[dict]:
        """The reviewer's own decisions in force, newest first (the page's `previous`)."""
        rows = self.store.own_history(reviewer.id, before if before is not None else 1 << 62,
                                      max(1, min(int(limit), 50)))
        out = []
        for event_id, key, decision, final, reason, at in rows:
            seen = self.store.event_data(event_id)
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
        counts.update(self.store.state_counts())
        total = sum(counts.values())
        out: dict[str, Any] = {"items": total, **counts, "leased": self.store.leased_count(self.clock())}
        if reviewer is not None:
            mine, today = self.store.reviewer_counts(reviewer.id, self.clock() - 86400)
            out["me"] = {"name": reviewer.name, "decisions": mine, "last_24h": today}
        return out

    def recount(self) -> dict:
        """Items per state counted from the queue itself (what `review_counts` must equal)."""
        counts = dict.fromkeys(STATES, 0)
        counts.update(self.store.recount())
        return counts
