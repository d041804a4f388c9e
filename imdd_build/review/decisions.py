"""`DecisionService`: recording a reviewer's decision (accept, edit, reject, skip, flag) on an item they
hold the lease of (or an imported one), with idempotent retries, resolving double reviews, and queuing
the outcome for the records (the outbox)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Optional

from ..caption.checks import disallowed_characters
from ..record import Record
from . import outcome as outcomes
from .common import WRITE_LOCK, Conflict, Invalid, Reviewer, guideline_version, snapshot, word_diff
from .leasing import LeaseService
from .outbox import Outbox
from .store import ReviewStore


def token_ok(expected: Optional[str], given) -> bool:
    """Does the client's `version` match the item's current (opaque) token?"""
    return bool(expected) and isinstance(given, str) and len(given) <= 64 and \
        hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


class DecisionService:
    """Decisions, skips and flags, with their audit events, in one transaction each."""

    def __init__(self, store: ReviewStore, leases: LeaseService, outbox: Outbox, clock: Callable[[], float]):
        self.store = store
        self.leases = leases
        self.outbox = outbox
        self.clock = clock

    def submit(self, reviewer: Reviewer, key: str, decision: str, version: Optional[str],
               caption: Optional[str] = None, reason: Optional[str] = None, labels: Optional[dict] = None,
               time_spent: Optional[float] = None, note: Optional[str] = None, imported: Optional[dict] = None,
               idempotency_key: Optional[str] = None) -> dict:
        """Record a decision on an item leased to the reviewer under the lease token `version` (or an imported one).

        With an `idempotency_key`, a retry of the same request (same reviewer, key and item) returns the
        first answer instead of a conflict, so a client whose response was lost can send it again.
        """
        decision, caption, reason, labels = outcomes.validate(decision, caption, reason, labels)
        if note is not None:
            note = outcomes.plain(str(note)[:2000], "note")
        with WRITE_LOCK:
            now = self.clock() if not imported else float(imported.get("at") or self.clock())
            with self.store.transaction():
                if idempotency_key is not None:
                    replay = self._replay(reviewer, idempotency_key, key)
                    if replay is not None:
                        return replay
                row, record = self.leases.load(key)
                self._check_may_decide(row, reviewer, key, version, imported)
                server_spent = max(0.0, now - (row["leased_at"] or now)) if imported is None else None
                spent = float(time_spent) if time_spent is not None and 0 <= float(time_spent) < 86400 else server_spent
                draft = record.caption or ""
                if decision == "edit" and caption.strip() == draft.strip() and not labels:
                    decision = "accept"
                if decision == "accept" and disallowed_characters(draft):
                    raise Invalid("the draft contains control or invisible characters: edit it or reject it")
                final = caption if decision == "edit" else (draft if decision == "accept" else None)
                data = self._event_data(row, record, decision, caption, reason, labels, note, imported, spent,
                                        server_spent)
                result: dict[str, Any] = {"key": key, "decision": decision, "required_reviews": row["required"]}
                if decision == "skip":
                    event = self.store.add_event(key, reviewer, "skip", data, now)
                    self.store.add_skip(reviewer.id, key, event)
                    self.store.release(key, now)
                    result.update(event_id=event, state="open")
                    return self._remember(reviewer, idempotency_key, key, result, now)
                if decision == "flag":
                    event = self.store.add_event(key, reviewer, "flag", data, now)
                    self.store.add_decision(key, reviewer.id, event, "flag", None, reason, now, spent, replace=True)
                    self.store.release(key, now, state="flagged")
                    result.update(event_id=event, state="flagged")
                    return self._remember(reviewer, idempotency_key, key, result, now)
                state, outcome, resolved = "open", None, None
                done = row["decisions"] + 1
                if done >= row["required"]:
                    mine = {"decision": decision, "final": final, "reason": reason, "labels": labels,
                            "caption": caption if decision == "edit" else None}
                    resolved = outcomes.resolve([*self._decided(key), mine])
                    if resolved is None:
                        state = "disputed"
                    else:
                        state, outcome = "done", resolved["decision"]
                if resolved is not None:
                    data["before"], data["after"] = snapshot(record), self.after(record, resolved, reviewer, now, key)
                event = self.store.add_event(key, reviewer, decision, data, now)
                self.store.add_decision(key, reviewer.id, event, decision, final, reason, now, spent)
                self.store.set_outcome(key, done, state, outcome)
                self.store.release(key, now, state=state)
                if resolved is not None:
                    self.store.add_pending(event, key, data["after"])
                result.update(event_id=event, state=state, outcome=outcome)
                self._remember(reviewer, idempotency_key, key, result, now)
            self.outbox.drain()
            return result

    def _check_may_decide(self, row: dict, reviewer: Reviewer, key: str, version: Optional[str],
                          imported: Optional[dict]) -> None:
        """Conflict unless the reviewer holds the item's current lease (or, imported, has not decided it)."""
        if imported is None:
            if row["lease_reviewer"] != reviewer.id:
                raise Conflict("the item is not leased to you (it may have expired and gone to someone else)")
            if not token_ok(row["lease_token"], version):
                raise Conflict("stale version: the lease moved on; ask for the next item")
            if row["state"] != "open":
                raise Conflict("the item is no longer open")
        else:
            if row["state"] != "open":
                raise Conflict(f"the item is {row['state']}")
            if self.store.has_decided(key, reviewer.id):
                raise Conflict("this reviewer already decided the item")

    @staticmethod
    def _event_data(row: dict, record: Record, decision: str, caption: Optional[str], reason: Optional[str],
                    labels: Optional[dict], note: Optional[str], imported: Optional[dict], spent: Optional[float],
                    server_spent: Optional[float]) -> dict:
        """What the audit event of a decision records."""
        draft = record.caption or ""
        data: dict[str, Any] = {
            "decision": decision, "draft": draft, "draft_source": record.caption_source,
            "version": row["version"], "leased_at": row["leased_at"], "time_spent": spent,
            "time_spent_server": server_spent, "guideline_version": guideline_version(),
            "required_reviews": row["required"], "round": row["decisions"] + 1,
        }
        if decision == "edit":
            data["caption"] = caption
            data["diff"] = word_diff(draft, caption)
        if reason:
            data["reason"] = reason
        data["labels_before"] = {"label": record.label, "defect_types": list(record.defect_types)}
        if labels:
            data["labels"] = labels
        if note:
            data["note"] = note[:2000]
        if imported:
            data["imported"] = {k: v for k, v in imported.items() if k != "at"}
        return data

    def after(self, record: Record, outcome: dict, reviewer: Reviewer, now: float, key: str) -> dict:
        """The record's caption fields once `outcome` applies, naming every reviewer who decided it."""
        reviewers = self.store.deciders(key)
        if reviewer.name not in reviewers:
            reviewers.append(reviewer.name)
        return outcomes.after(record, outcome, reviewers, now)

    def _decided(self, key: str) -> list[dict]:
        return [{"decision": decision, "final": final, "reason": reason, "labels": data.get("labels"),
                 "caption": data.get("caption")} for decision, final, reason, data in self.store.decided(key)]

    # -- idempotent retries ------------------------------------------------------------------
    def _replay(self, reviewer: Reviewer, token: str, key: str) -> Optional[dict]:
        found = self.store.idempotent_answer(reviewer.id, token)
        if found is None:
            return None
        if found[0] != key:
            raise Invalid("Idempotency-Key already used for another item")
        return {**found[1], "replayed": True}

    def _remember(self, reviewer: Reviewer, token: Optional[str], key: str, result: dict, now: float) -> dict:
        if token is not None:
            self.store.remember_answer(reviewer.id, token, key, result, now)
        return result
