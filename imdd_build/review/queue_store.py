"""`QueueStore`: the base every `ReviewQueue` part builds on: connection plumbing (transactions, config,
audit events, rows), releasing leases, and writing pending outcomes (the outbox) to the catalog."""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
from collections.abc import Callable
from typing import Optional

from ..catalog import Catalog
from ..record import Record
from .queue_common import NotFound, Reviewer
from .queue_schema import CAPTION_FIELDS, WRITE_LOCK, _Tx


class QueueStore:
    """Connection plumbing shared by the `ReviewQueue` mixins (attributes are set by `ReviewQueue.__init__`)."""

    catalog: Catalog
    db: sqlite3.Connection
    lease_seconds: float
    clock: Callable[[], float]

    # -- plumbing --------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self.db)

    def config(self) -> dict:
        return {n: json.loads(v) for n, v in self.db.execute("SELECT name, value FROM review_config")}

    def _set_config(self, values: dict) -> None:
        for name, value in values.items():
            self.db.execute("INSERT OR REPLACE INTO review_config VALUES (?, ?)", (name, json.dumps(value)))

    def _event(self, key: str, reviewer: Reviewer, action: str, data: dict, at: float) -> int:
        cur = self.db.execute("INSERT INTO review_events (key, reviewer_id, reviewer, action, data, at) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (key, reviewer.id, reviewer.name, action, json.dumps(data, sort_keys=True), at))
        return int(cur.lastrowid)

    def _row(self, key: str) -> Optional[dict]:
        cur = self.db.execute("SELECT * FROM review_queue WHERE key = ?", (key,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    def reviewer(self, reviewer_id: int) -> Optional[Reviewer]:
        row = self.db.execute("SELECT id, name, is_admin FROM review_reviewers WHERE id = ?", (reviewer_id,)).fetchone()
        return Reviewer(row[0], row[1], bool(row[2])) if row else None

    def _load(self, key: str) -> tuple[dict, Record]:
        """The queue row and the record of an item; NotFound when either is missing."""
        row = self._row(key)
        record = self.catalog.get(key)
        if row is None or record is None:
            raise NotFound(key)
        return row, record

    def _has_decided(self, key: str, reviewer_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM review_decisions WHERE key = ? AND reviewer_id = ?",
                               (key, reviewer_id)).fetchone() is not None

    @staticmethod
    def _token_ok(expected: Optional[str], given) -> bool:
        """Does the client's `version` match the item's current (opaque) token?"""
        return bool(expected) and isinstance(given, str) and len(given) <= 64 and \
            hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))

    def _lease(self, key: str, reviewer: Reviewer, now: float, leased_at: Optional[float] = None) -> None:
        """Lease `key` to the reviewer with a fresh opaque token, dropping any other lease they hold."""
        self.db.execute("UPDATE review_queue SET lease_reviewer = NULL, lease_until = NULL, leased_at = NULL, "
                        "lease_token = NULL, version = version + 1 WHERE lease_reviewer = ? AND key != ?",
                        (reviewer.id, key))
        self.db.execute("UPDATE review_queue SET lease_reviewer = ?, lease_until = ?, leased_at = ?, lease_token = ?, "
                        "version = version + 1, updated_at = ? WHERE key = ?",
                        (reviewer.id, now + self.lease_seconds, leased_at if leased_at is not None else now,
                         secrets.token_urlsafe(12), now, key))

    def _release(self, key: str, now: float, state: Optional[str] = None) -> None:
        """Take the lease back; the item gets a fresh token (what an admin's adjudication must quote)."""
        sets = ("lease_reviewer = NULL, lease_until = NULL, leased_at = NULL, lease_token = ?, version = version + 1, "
                "updated_at = ?")
        args: list = [secrets.token_urlsafe(12), now]
        if state:
            sets += ", state = ?"
            args.append(state)
        self.db.execute(f"UPDATE review_queue SET {sets} WHERE key = ?", (*args, key))

    # -- applying to the catalog -------------------------------------------------------------
    def drain(self) -> int:
        """Write pending outcomes to the records through the Catalog API; returns how many."""
        n = 0
        with WRITE_LOCK:
            while True:
                row = self.db.execute("SELECT event_id, key, changes FROM review_outbox ORDER BY event_id LIMIT 1").fetchone()
                if not row:
                    return n
                event_id, key, changes = row
                self._apply(key, json.loads(changes))
                self.db.execute("DELETE FROM review_outbox WHERE event_id = ?", (event_id,))
                n += 1

    def _apply(self, key: str, after: dict) -> None:
        record = self.catalog.get(key)
        if record is None:
            return
        if record.label != after["label"] or list(record.defect_types) != after["defect_types"]:
            labelled = record.model_copy(update={"label": after["label"], "defect_types": after["defect_types"]})
            self.catalog.upsert([(labelled, self.catalog.fingerprint(key) or "")])
            record = self.catalog.get(key) or labelled
        self.catalog.set_captions([record.model_copy(update={f: after[f] for f in CAPTION_FIELDS})])
