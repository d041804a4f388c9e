"""`AdjudicationMixin`: undoing a reviewer's decision and the admins' adjudication of disputed and
flagged items (uses `DecisionsMixin._validate`/`_after` and `LeasingMixin.item` through `ReviewQueue`)."""

from __future__ import annotations

import json
from typing import Any, Optional

from .queue_common import Conflict, Invalid, NotFound, Reviewer, _snapshot, guideline_version
from .queue_schema import WRITE_LOCK
from .queue_store import QueueStore

UNDO_CLOSED = "the item moved on since your decision (or all its reviews are in): ask an admin to adjudicate"


class AdjudicationMixin(QueueStore):
    # -- undo ------------------------------------------------------------------------------
    def undo(self, reviewer: Reviewer, event_id: Optional[int] = None) -> dict:
        """Undo the reviewer's latest decision (or the given one) while nothing happened to the item since.

        The item is leased back to the reviewer (their one lease: any other goes back to the queue); a
        resolved outcome is taken back out of the record (only if the record still holds it). Once all
        reviews of a double-reviewed item are in, nobody can undo (that would let a reviewer learn the
        other's answer and change their own); every refusal then reads the same. Appends an `undo`
        event; the log itself is never changed.
        """
        with WRITE_LOCK:
            self.drain()
            now = self.clock()
            with self._tx():
                if event_id is None:
                    row = self.db.execute(
                        "SELECT MAX(event_id) FROM (SELECT event_id FROM review_decisions WHERE reviewer_id = ? "
                        "UNION ALL SELECT event_id FROM review_skips WHERE reviewer_id = ?)",
                        (reviewer.id, reviewer.id)).fetchone()
                    event_id = row[0]
                    if event_id is None:
                        raise Conflict("nothing to undo")
                if not 0 < int(event_id) < 1 << 62:
                    raise NotFound("event")
                event = self.db.execute("SELECT key, reviewer_id, action, data FROM review_events WHERE id = ?",
                                        (int(event_id),)).fetchone()
                if event is None or event[1] != reviewer.id:
                    raise NotFound("event")
                key, _, action, data = event
                data = json.loads(data)
                skip = self.db.execute("SELECT 1 FROM review_skips WHERE reviewer_id = ? AND event_id = ?",
                                       (reviewer.id, event_id)).fetchone()
                decided = self.db.execute("SELECT 1 FROM review_decisions WHERE reviewer_id = ? AND event_id = ?",
                                          (reviewer.id, event_id)).fetchone()
                if not skip and not decided:
                    raise Conflict("that decision is no longer in force")
                q = self._row(key)
                latest = self.db.execute("SELECT MAX(id) FROM review_events WHERE key = ? "
                                         "AND action NOT IN ('undo', 'skip')", (key,)).fetchone()[0]
                closed = q["required"] >= 2 and q["decisions"] >= q["required"]
                if not skip and (closed or latest != event_id):
                    raise Conflict(UNDO_CLOSED)
                undo_data: dict[str, Any] = {"undoes": event_id, "action": action}
                if skip:
                    self.db.execute("DELETE FROM review_skips WHERE reviewer_id = ? AND key = ?", (reviewer.id, key))
                else:
                    if data.get("after"):
                        record = self.catalog.get(key)
                        if record is None or _snapshot(record) != data["after"]:
                            raise Conflict("the record changed since the decision was applied")
                        undo_data["before"], undo_data["after"] = data["after"], data["before"]
                    self.db.execute("DELETE FROM review_decisions WHERE reviewer_id = ? AND event_id = ?",
                                    (reviewer.id, event_id))
                    count = self.db.execute("SELECT COUNT(*) FROM review_decisions WHERE key = ? AND decision != 'flag'",
                                            (key,)).fetchone()[0]
                    self.db.execute("UPDATE review_queue SET decisions = ?, state = 'open', outcome = NULL WHERE key = ?",
                                    (count, key))
                undo_event = self._event(key, reviewer, "undo", undo_data, now)
                if undo_data.get("after"):
                    self.db.execute("INSERT INTO review_outbox VALUES (?, ?, ?)",
                                    (undo_event, key, json.dumps(undo_data["after"])))
                leased = q["lease_reviewer"] is not None and (q["lease_until"] or 0) >= now and \
                    q["lease_reviewer"] != reviewer.id
                if skip and (q["state"] != "open" or self._has_decided(key, reviewer.id)):
                    leased = True  # nothing to hand back: the item moved on or was decided meanwhile
                if not leased:
                    self._lease(key, reviewer, now)
            self.drain()
            return {"undone": event_id, "key": key, "action": action, "undo_event": undo_event,
                    "item": None if leased else self.item(key)}

    # -- adjudication ----------------------------------------------------------------------
    def adjudication(self, after: str = "", limit: int = 20) -> list[dict]:
        """Disputed and flagged items (admins): every decision on each, a page at a time by key."""
        rows = self.db.execute("SELECT key, state, lease_token FROM review_queue WHERE state IN ('disputed', 'flagged') "
                               "AND key > ? ORDER BY key LIMIT ?", (after, max(1, min(int(limit), 100)))).fetchall()
        out = []
        for key, state, version in rows:
            decisions = [{"reviewer": name, "decision": d, "final_caption": final, "reason": reason, "at": at}
                         for name, d, final, reason, at in self.db.execute(
                             "SELECT v.name, d.decision, d.final_caption, d.reason, d.at FROM review_decisions d "
                             "JOIN review_reviewers v ON v.id = d.reviewer_id WHERE d.key = ? ORDER BY d.event_id",
                             (key,))]
            record = self.catalog.get(key)
            out.append({"key": key, "state": state, "version": version, "draft": record.caption if record else None,
                        "image_url": f"/api/items/{key}/image", "decisions": decisions,
                        "label": record.label if record else None,
                        "defect_types": record.defect_types if record else []})
        return out

    def adjudicate(self, admin: Reviewer, key: str, decision: str, version: Optional[str],
                   caption: Optional[str] = None, reason: Optional[str] = None, labels: Optional[dict] = None) -> dict:
        """An admin's final word on a disputed or flagged item (or reopen it with `skip`)."""
        if not admin.is_admin:
            raise PermissionError("admins only")
        if decision not in ("accept", "edit", "reject", "skip"):
            raise Invalid("adjudicate with accept, edit, reject, or skip (reopen the item)")
        decision, caption, reason, labels = self._validate(decision, caption, reason, labels)
        with WRITE_LOCK:
            now = self.clock()
            with self._tx():
                row, record = self._load(key)
                if row["state"] not in ("disputed", "flagged"):
                    raise Conflict(f"the item is {row['state']}, not disputed or flagged")
                if not self._token_ok(row["lease_token"], version):
                    raise Conflict("stale version: the item changed; reload the adjudication list")
                data: dict[str, Any] = {"decision": decision, "draft": record.caption,
                                        "guideline_version": guideline_version(), "previous_state": row["state"]}
                if decision == "skip":
                    self.db.execute("DELETE FROM review_decisions WHERE key = ? AND decision = 'flag'", (key,))
                    event = self._event(key, admin, "reopen", data, now)
                    self._release(key, now, state="open")
                    return {"key": key, "state": "open", "event_id": event}
                if decision == "edit" and caption == record.caption and not labels:
                    decision = "accept"
                outcome = {"decision": decision, "caption": caption, "reason": reason, "labels": labels}
                after = self._after(record, outcome, admin, now, key)
                after["caption_meta"]["review"]["adjudicated_by"] = admin.name
                data.update(before=_snapshot(record), after=after, caption=caption, reason=reason, labels=labels)
                event = self._event(key, admin, "adjudicate", data, now)
                self.db.execute("UPDATE review_queue SET state = 'done', outcome = ? WHERE key = ?", (decision, key))
                self._release(key, now)
                self.db.execute("INSERT INTO review_outbox VALUES (?, ?, ?)", (event, key, json.dumps(after)))
            self.drain()
            return {"key": key, "state": "done", "outcome": decision, "event_id": event}
