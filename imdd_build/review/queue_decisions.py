"""`DecisionsMixin`: recording a reviewer's decision, validating it, resolving double reviews and computing
the record's caption fields once an outcome applies."""

from __future__ import annotations

import json
from typing import Any, Optional

from ..caption.checks import disallowed_characters
from ..record import Record
from .queue_common import Conflict, Invalid, Reviewer, _checks, _snapshot, category, guideline_version, word_diff
from .queue_schema import DECISIONS, MAX_CAPTION_CHARS, MAX_SKIPS, REASONS, WRITE_LOCK
from .queue_store import QueueStore


class DecisionsMixin(QueueStore):
    # -- decisions -------------------------------------------------------------------------
    def submit(self, reviewer: Reviewer, key: str, decision: str, version: Optional[str],
               caption: Optional[str] = None, reason: Optional[str] = None, labels: Optional[dict] = None,
               time_spent: Optional[float] = None, note: Optional[str] = None, imported: Optional[dict] = None,
               idempotency_key: Optional[str] = None) -> dict:
        """Record a decision on an item leased to the reviewer under the lease token `version` (or an imported one).

        With an `idempotency_key`, a retry of the same request (same reviewer, key and item) returns the
        first answer instead of a conflict, so a client whose response was lost can send it again.
        """
        decision, caption, reason, labels = self._validate(decision, caption, reason, labels)
        if note is not None:
            note = self._plain(str(note)[:2000], "note")
        with WRITE_LOCK:
            now = self.clock() if not imported else float(imported.get("at") or self.clock())
            with self._tx():
                if idempotency_key is not None:
                    replay = self._replay(reviewer, idempotency_key, key)
                    if replay is not None:
                        return replay
                row, record = self._load(key)
                if imported is None:
                    if row["lease_reviewer"] != reviewer.id:
                        raise Conflict("the item is not leased to you (it may have expired and gone to someone else)")
                    if not self._token_ok(row["lease_token"], version):
                        raise Conflict("stale version: the lease moved on; ask for the next item")
                    if row["state"] != "open":
                        raise Conflict("the item is no longer open")
                else:
                    if row["state"] != "open":
                        raise Conflict(f"the item is {row['state']}")
                    if self._has_decided(key, reviewer.id):
                        raise Conflict("this reviewer already decided the item")
                server_spent = max(0.0, now - (row["leased_at"] or now)) if imported is None else None
                spent = float(time_spent) if time_spent is not None and 0 <= float(time_spent) < 86400 else server_spent
                draft = record.caption or ""
                if decision == "edit" and caption.strip() == draft.strip() and not labels:
                    decision = "accept"
                if decision == "accept" and disallowed_characters(draft):
                    raise Invalid("the draft contains control or invisible characters: edit it or reject it")
                final = caption if decision == "edit" else (draft if decision == "accept" else None)
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
                result: dict[str, Any] = {"key": key, "decision": decision, "required_reviews": row["required"]}
                if decision == "skip":
                    event = self._event(key, reviewer, "skip", data, now)
                    self.db.execute("INSERT OR REPLACE INTO review_skips VALUES (?, ?, ?)", (reviewer.id, key, event))
                    self._forget_old_skips(reviewer)
                    self._release(key, now)
                    result.update(event_id=event, state="open")
                    return self._remember(reviewer, idempotency_key, key, result, now)
                if decision == "flag":
                    event = self._event(key, reviewer, "flag", data, now)
                    self.db.execute("INSERT OR REPLACE INTO review_decisions (key, reviewer_id, event_id, decision, "
                                    "final_caption, reason, at, time_spent) VALUES (?, ?, ?, 'flag', NULL, ?, ?, ?)",
                                    (key, reviewer.id, event, reason, now, spent))
                    self._release(key, now, state="flagged")
                    result.update(event_id=event, state="flagged")
                    return self._remember(reviewer, idempotency_key, key, result, now)
                state, outcome, resolved = "open", None, None
                done = row["decisions"] + 1
                if done >= row["required"]:
                    mine = {"decision": decision, "final": final, "reason": reason, "labels": labels,
                            "caption": caption if decision == "edit" else None}
                    others = self._decided(key)
                    resolved = self._resolve([*others, mine])
                    if resolved is None:
                        state = "disputed"
                    else:
                        state, outcome = "done", resolved["decision"]
                if resolved is not None:
                    before = _snapshot(record)
                    after = self._after(record, resolved, reviewer, now, key)
                    data["before"], data["after"] = before, after
                event = self._event(key, reviewer, decision, data, now)
                self.db.execute("INSERT INTO review_decisions (key, reviewer_id, event_id, decision, final_caption, "
                                "reason, at, time_spent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (key, reviewer.id, event, decision, final, reason, now, spent))
                self.db.execute("UPDATE review_queue SET decisions = ?, state = ?, outcome = ? WHERE key = ?",
                                (done, state, outcome, key))
                self._release(key, now, state=state)
                if resolved is not None:
                    self.db.execute("INSERT INTO review_outbox VALUES (?, ?, ?)",
                                    (event, key, json.dumps(data["after"])))
                result.update(event_id=event, state=state, outcome=outcome)
                self._remember(reviewer, idempotency_key, key, result, now)
            self.drain()
            return result

    # -- idempotent retries and bounded skips ------------------------------------------------
    def _replay(self, reviewer: Reviewer, token: str, key: str) -> Optional[dict]:
        row = self.db.execute("SELECT key, response FROM review_idempotency WHERE reviewer_id = ? AND token = ?",
                              (reviewer.id, token)).fetchone()
        if row is None:
            return None
        if row[0] != key:
            raise Invalid("Idempotency-Key already used for another item")
        return {**json.loads(row[1]), "replayed": True}

    def _remember(self, reviewer: Reviewer, token: Optional[str], key: str, result: dict, now: float) -> dict:
        if token is not None:
            self.db.execute("DELETE FROM review_idempotency WHERE at < ?", (now - 86400,))
            self.db.execute("INSERT INTO review_idempotency VALUES (?, ?, ?, ?, ?)",
                            (reviewer.id, token, key, json.dumps(result, sort_keys=True), now))
        return result

    def _forget_old_skips(self, reviewer: Reviewer) -> None:
        """Keep the reviewer's latest MAX_SKIPS skips: older skipped items may come back to them, and the
        next-item query never walks past more than MAX_SKIPS of their skips (the log keeps every skip)."""
        self.db.execute("DELETE FROM review_skips WHERE reviewer_id = :r AND event_id <= (SELECT event_id FROM "
                        "review_skips WHERE reviewer_id = :r ORDER BY event_id DESC LIMIT 1 OFFSET :n)",
                        {"r": reviewer.id, "n": MAX_SKIPS})

    @staticmethod
    def _plain(text: str, field: str) -> str:
        """`text` if it holds no control or invisible characters (the caption checks' rule), else Invalid."""
        bad = disallowed_characters(text)
        if bad:
            raise Invalid(f"{field} contains control or invisible characters ({', '.join(bad)})")
        return text

    def _validate(self, decision, caption, reason, labels):
        if decision not in DECISIONS:
            raise Invalid(f"decision must be one of {', '.join(DECISIONS)}")
        if caption is not None and not isinstance(caption, str):
            raise Invalid("caption must be a string")
        if decision == "edit":
            if not caption or not caption.strip():
                raise Invalid("an edit needs the edited caption")
            if len(caption) > MAX_CAPTION_CHARS:
                raise Invalid(f"caption longer than {MAX_CAPTION_CHARS} characters")
            caption = " ".join(self._plain(caption, "caption").split())
        if decision == "reject":
            if reason not in REASONS:
                raise Invalid(f"a reject needs a reason: one of {', '.join(REASONS)}")
        elif decision != "flag":
            reason = None
        elif reason is not None:
            reason = self._plain(str(reason)[:200], "reason")
        if labels:
            labels = self._validate_labels(labels)
        return decision, caption, reason, labels or None

    @staticmethod
    def _validate_labels(labels: dict) -> dict:
        if not isinstance(labels, dict):
            raise Invalid("labels must be an object with label and defect_types")
        from ..taxonomy import load_taxonomy

        label = labels.get("label", "defective")
        if label not in ("normal", "defective", "unknown"):
            raise Invalid("labels.label must be normal, defective or unknown")
        types = labels.get("defect_types") or []
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise Invalid("labels.defect_types must be a list of canonical defect types")
        known = load_taxonomy().defect_types
        bad = [str(i) for i, t in enumerate(types) if t not in known]
        if bad:
            raise Invalid(f"labels.defect_types[{', '.join(bad[:5])}]: not a canonical defect type "
                          "(see annotation_guidelines/taxonomy.yaml)")
        if label != "defective" and types:
            raise Invalid("a normal image has no defect types")
        return {"label": label, "defect_types": list(dict.fromkeys(types))}

    def _decided(self, key: str) -> list[dict]:
        rows = self.db.execute("SELECT d.decision, d.final_caption, d.reason, e.data FROM review_decisions d "
                               "JOIN review_events e ON e.id = d.event_id WHERE d.key = ? AND d.decision != 'flag' "
                               "ORDER BY d.event_id", (key,)).fetchall()
        out = []
        for decision, final, reason, data in rows:
            data = json.loads(data)
            out.append({"decision": decision, "final": final, "reason": reason, "labels": data.get("labels"),
                        "caption": data.get("caption")})
        return out

    @staticmethod
    def _resolve(decisions: list[dict]) -> Optional[dict]:
        """The outcome when the reviews agree, else None (disputed)."""
        first = decisions[0]
        for other in decisions[1:]:
            if category(other["decision"]) != category(first["decision"]):
                return None
            if category(first["decision"]) == "accept" and " ".join((other["final"] or "").split()) != \
                    " ".join((first["final"] or "").split()):
                return None
            if (other.get("labels") or None) != (first.get("labels") or None):
                return None
        edited = next((d for d in decisions if d["decision"] == "edit"), None)
        return dict(edited or first)

    def _after(self, record: Record, outcome: dict, reviewer: Reviewer, now: float, key: str) -> dict:
        """The record's caption fields (and labels) once the outcome is applied."""
        reviewers = [r for (r,) in self.db.execute(
            "SELECT v.name FROM review_decisions d JOIN review_reviewers v ON v.id = d.reviewer_id "
            "WHERE d.key = ? AND d.decision != 'flag' ORDER BY d.event_id", (key,))]
        if reviewer.name not in reviewers:
            reviewers.append(reviewer.name)
        after = _snapshot(record)
        meta = dict(after["caption_meta"])
        review = {"decision": outcome["decision"], "reviewers": reviewers, "at": now,
                  "guideline_version": guideline_version()}
        if outcome["decision"] == "edit":
            after["caption"] = outcome["caption"]
            after["caption_source"] = "expert"
            after["caption_status"] = "verified"
            review.update(draft=record.caption, draft_source=record.caption_source,
                          diff=word_diff(record.caption or "", outcome["caption"]))
        elif outcome["decision"] == "accept":
            after["caption_status"] = "verified"
        else:
            after["caption_status"] = "rejected"
            review["reason"] = outcome["reason"]
        if outcome.get("labels"):
            review["label_correction"] = {"before": {"label": record.label, "defect_types": record.defect_types},
                                          "after": outcome["labels"]}
            after["label"] = outcome["labels"]["label"]
            after["defect_types"] = outcome["labels"]["defect_types"]
        meta["review"] = review
        after["caption_meta"] = meta
        if outcome["decision"] != "reject" and after["caption"]:
            probe = record.model_copy(update={k: after[k] for k in ("caption", "caption_source", "label",
                                                                     "defect_types")})
            checked = _checks(probe)
            if checked is not None:
                meta["checks"] = checked
        return after
