"""`AdjudicationService`: undoing a reviewer's decision, and the admins' adjudication of disputed and
flagged items (through `DecisionService` for the outcome and `LeaseService` for leases and items)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ..catalog import Catalog
from . import outcome as outcomes
from .common import WRITE_LOCK, Conflict, Invalid, NotFound, Reviewer, guideline_version, snapshot
from .decisions import DecisionService, token_ok
from .leasing import LeaseService
from .outbox import Outbox
from .store import ReviewStore

UNDO_CLOSED = "the item moved on since your decision (or all its reviews are in): ask an admin to adjudicate"


class AdjudicationService:
    """Undo (reviewers) and adjudication (admins)."""

    def __init__(self, store: ReviewStore, catalog: Catalog, leases: LeaseService, decisions: DecisionService,
                 outbox: Outbox, clock: Callable[[], float]):
        self.store = store
        self.catalog = catalog
        self.leases = leases
        self.decisions = decisions
        self.outbox = outbox
        self.clock = clock

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
            self.outbox.drain()
            now = self.clock()
            with self.store.transaction():
                if event_id is None:
                    event_id = self.store.latest_own(reviewer.id)
                    if event_id is None:
                        raise Conflict("nothing to undo")
                if not 0 < int(event_id) < 1 << 62:
                    raise NotFound("event")
                event = self.store.event(int(event_id))
                if event is None or event[1] != reviewer.id:
                    raise NotFound("event")
                key, _, action, data = event
                skip = self.store.skip_in_force(reviewer.id, event_id)
                if not skip and not self.store.decision_in_force(reviewer.id, event_id):
                    raise Conflict("that decision is no longer in force")
                q = self.store.row(key)
                closed = q["required"] >= 2 and q["decisions"] >= q["required"]
                if not skip and (closed or self.store.latest_change(key) != event_id):
                    raise Conflict(UNDO_CLOSED)
                undo_data: dict[str, Any] = {"undoes": event_id, "action": action}
                if skip:
                    self.store.remove_skip(reviewer.id, key)
                else:
                    if data.get("after"):
                        record = self.catalog.get(key)
                        if record is None or snapshot(record) != data["after"]:
                            raise Conflict("the record changed since the decision was applied")
                        undo_data["before"], undo_data["after"] = data["after"], data["before"]
                    self.store.remove_decision(reviewer.id, event_id)
                    self.store.set_outcome(key, self.store.count_decisions(key), "open", None)
                undo_event = self.store.add_event(key, reviewer, "undo", undo_data, now)
                if undo_data.get("after"):
                    self.store.add_pending(undo_event, key, undo_data["after"])
                leased = q["lease_reviewer"] is not None and (q["lease_until"] or 0) >= now and \
                    q["lease_reviewer"] != reviewer.id
                if skip and (q["state"] != "open" or self.store.has_decided(key, reviewer.id)):
                    leased = True  # nothing to hand back: the item moved on or was decided meanwhile
                if not leased:
                    self.leases.lease(key, reviewer, now)
            self.outbox.drain()
            return {"undone": event_id, "key": key, "action": action, "undo_event": undo_event,
                    "item": None if leased else self.leases.item(key)}

    # -- adjudication ----------------------------------------------------------------------
    def adjudication(self, after: str = "", limit: int = 20) -> list[dict]:
        """Disputed and flagged items (admins): every decision on each, a page at a time by key."""
        out = []
        for key, state, version in self.store.disputed_or_flagged(after, max(1, min(int(limit), 100))):
            decisions = [{"reviewer": name, "decision": d, "final_caption": final, "reason": reason, "at": at}
                         for name, d, final, reason, at in self.store.decisions_on(key)]
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
        decision, caption, reason, labels = outcomes.validate(decision, caption, reason, labels)
        with WRITE_LOCK:
            now = self.clock()
            with self.store.transaction():
                row, record = self.leases.load(key)
                if row["state"] not in ("disputed", "flagged"):
                    raise Conflict(f"the item is {row['state']}, not disputed or flagged")
                if not token_ok(row["lease_token"], version):
                    raise Conflict("stale version: the item changed; reload the adjudication list")
                data: dict[str, Any] = {"decision": decision, "draft": record.caption,
                                        "guideline_version": guideline_version(), "previous_state": row["state"]}
                if decision == "skip":
                    self.store.remove_flags(key)
                    event = self.store.add_event(key, admin, "reopen", data, now)
                    self.store.release(key, now, state="open")
                    return {"key": key, "state": "open", "event_id": event}
                if decision == "edit" and caption == record.caption and not labels:
                    decision = "accept"
                outcome = {"decision": decision, "caption": caption, "reason": reason, "labels": labels}
                after = self.decisions.after(record, outcome, admin, now, key)
                after["caption_meta"]["review"]["adjudicated_by"] = admin.name
                data.update(before=snapshot(record), after=after, caption=caption, reason=reason, labels=labels)
                event = self.store.add_event(key, admin, "adjudicate", data, now)
                self.store.set_outcome(key, None, "done", decision)
                self.store.release(key, now)
                self.store.add_pending(event, key, after)
            self.outbox.drain()
            return {"key": key, "state": "done", "outcome": decision, "event_id": event}
