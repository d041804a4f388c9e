"""The review queue: items, leases, decisions, double review, adjudication and the append-only audit log.

Tables live in the workspace catalog file (`review_*`, created with CREATE TABLE IF NOT EXISTS):

* `review_queue`: one row per record with a draft caption, materialised with its priority
  (`tier` 0 failed checks, 1 stratified sample, 2 the rest; `rank` a seeded hash that orders a tier),
  the number of reviews it needs (2 for double review), its state (`open`, `done`, `disputed`,
  `flagged`), the current lease and a `version` that every change bumps. The next item is one
  indexed query (`review_queue_next` on state, tier, rank): nothing ever loads the whole queue.
* `review_decisions`: the decisions in force, one per (item, reviewer); undo removes one.
* `review_events`: the audit log. Append-only (triggers refuse UPDATE and DELETE): who, when, what,
  time spent, guideline version, the draft and the final text with their diff, label corrections,
  and the record's caption fields before and after.
* `review_outbox`: record changes decided but not yet written to the catalog. A decision commits its
  event and outbox row in one transaction; the change then goes through the Catalog API
  (`set_captions`, `upsert` for label corrections) and the row is removed. A crash in between is
  repaired by `drain()` on the next start, so no decision is lost and none applied twice.

A single-review item's decision reaches the record at once. A double-review item waits for its
second reviewer (who never sees the first decision); agreement (same accept/reject category and the
same final text) resolves it, anything else goes to the admins' adjudication view.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..catalog import Catalog
from ..record import KEY_RE, Record
from ..taxonomy import GUIDELINES_DIR

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

_VERSION_LINE = re.compile(r"\(version\s+([\w.-]+)\)|^version:\s*([\w.-]+)", re.IGNORECASE | re.MULTILINE)

# One writer at a time inside a process (the server's threads); SQLite's BEGIN IMMEDIATE orders processes.
WRITE_LOCK = threading.RLock()


class NotFound(LookupError):
    """The key is not in the queue (or the catalog)."""


class Conflict(RuntimeError):
    """Stale version, an item not leased to the caller, or a state that forbids the action (HTTP 409)."""


class Invalid(ValueError):
    """A malformed decision (HTTP 422)."""


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    is_admin: bool = False


def guideline_version() -> str:
    """`reviewer_guide@N+caption_style@M`: the versions stated in the guidelines' headings."""
    parts = []
    for name in ("reviewer_guide", "caption_style"):
        path = GUIDELINES_DIR / f"{name}.md"
        version = "missing"
        if path.exists():
            m = _VERSION_LINE.search(path.read_text(encoding="utf-8")[:2000])
            version = (m.group(1) or m.group(2)) if m else "unversioned"
        parts.append(f"{name}@{version}")
    return "+".join(parts)


def valid_key(key: str) -> bool:
    return bool(key) and len(key) <= 512 and bool(KEY_RE.match(key)) and ".." not in key


def _seeded(seed: int, salt: str, key: str) -> int:
    digest = hashlib.blake2b(f"{seed}\0{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # fits SQLite's signed 64-bit INTEGER


def _unit(seed: int, salt: str, key: str) -> float:
    return _seeded(seed, salt, key) / float(1 << 63)


def word_diff(draft: str, final: str) -> list[list[str]]:
    """The non-equal word spans between the draft and the final text: [op, draft words, final words]."""
    a, b = (draft or "").split(), (final or "").split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            out.append([op, " ".join(a[i1:i2]), " ".join(b[j1:j2])])
    return out


def category(decision: str) -> str:
    """Accept/reject category of a decision, for agreement."""
    return "reject" if decision == "reject" else "accept"


def _checks(record: Record) -> Optional[dict]:
    try:
        from ..caption.checks import check_record
    except ImportError:  # pragma: no cover - checks ship with the caption package
        return None
    return check_record(record).as_meta()


def check_results(record: Record) -> dict:
    """The check results shown beside the image: computed now, else what caption_meta carries."""
    live = _checks(record) if record.caption else None
    if live is not None:
        return {**live, "computed": "live"}
    stored = (record.caption_meta or {}).get("checks")
    if isinstance(stored, dict):
        return {**stored, "computed": "caption_meta"}
    return {"passed": None, "results": {}, "reasons": [], "computed": "none"}


def _snapshot(record: Record) -> dict:
    data = {f: getattr(record, f) for f in CAPTION_FIELDS}
    data["caption_meta"] = dict(data["caption_meta"] or {})
    data["label"] = record.label
    data["defect_types"] = list(record.defect_types)
    return data


class ReviewQueue:
    """The queue over one catalog connection. Create one per thread; writes take `WRITE_LOCK`."""

    def __init__(self, catalog: Catalog, lease_seconds: float = 900.0, clock: Callable[[], float] = time.time):
        self.catalog = catalog
        self.db: sqlite3.Connection = catalog.db
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        with WRITE_LOCK:
            self.db.executescript(SCHEMA)

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

    # -- enqueue ---------------------------------------------------------------------------
    def enqueue(self, sample_rate: float = 0.05, double_rate: float = 0.1, seed: int = 0,
                source: Optional[str] = None, gold: Optional[dict[str, str]] = None, batch: int = 5000) -> dict:
        """Queue every record with a draft caption (idempotent); then sample each stratum to `sample_rate`.

        Stratum = (source, first canonical defect type, or the label for normal/unknown images).
        Failed-checks drafts (checks in caption_meta, `review_priority` 0, or the checks run now when
        caption_meta has none) go first; then `ceil(sample_rate * n)` drafts of each stratum, picked
        by a seeded hash; then the rest. `double_rate` of the items need two blind reviews.
        """
        for name, rate in (("sample_rate", sample_rate), ("double_rate", double_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1, not {rate}")
        now = self.clock()
        where, args = "caption_status = 'draft'", []
        if source:
            where += " AND source = ?"
            args.append(source)
        sql = (f"SELECT key, source, label, json_extract(data, '$.defect_types[0]'), "
               f"json_extract(data, '$.caption_meta.checks.passed'), "
               f"json_extract(data, '$.caption_meta.review_priority'), json_extract(data, '$.caption') "
               f"FROM records WHERE {where} AND key > ? ORDER BY key LIMIT {int(batch)}")
        seen = added = failed = 0
        last = ""
        while True:
            with WRITE_LOCK:
                rows = self.db.execute(sql, (*args, last)).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                todo = []
                for key, src, label, first_type, passed, priority, caption in rows:
                    if caption is None:
                        continue
                    seen += 1
                    if passed is None and priority is None:
                        record = self.catalog.get(key)
                        result = _checks(record) if record else None
                        passed = result["passed"] if result else 1
                    bad = passed in (0, False) or priority == 0
                    failed += bad
                    stratum = first_type if label == "defective" and first_type else label
                    required = 2 if _unit(seed, "double", key) < double_rate else 1
                    todo.append((key, src, stratum, 0 if bad else 2, _seeded(seed, "rank", key), required, now, now))
                with self._tx():
                    before = self.db.total_changes
                    self.db.executemany(
                        "INSERT OR IGNORE INTO review_queue (key, source, stratum, tier, rank, required, "
                        "enqueued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", todo)
                    added += self.db.total_changes - before
        sampled = self._sample(sample_rate)
        gold_set, gold_unknown = self._set_gold(gold or {})
        with WRITE_LOCK, self._tx():
            self._set_config({"sample_rate": sample_rate, "double_rate": double_rate, "seed": seed})
        total = self.db.execute("SELECT COUNT(*) FROM review_queue").fetchone()[0]
        return {"command": "review enqueue", "drafts_seen": seen, "added": added, "failed_checks": failed,
                "sampled_added": sampled, "sample_rate": sample_rate, "double_rate": double_rate, "seed": seed,
                "gold": gold_set, "gold_unknown_keys": gold_unknown, "queue": total}

    def _sample(self, rate: float) -> int:
        """Promote the lowest-ranked tier-2 items of each stratum until it holds ceil(rate * n) sampled."""
        promoted = 0
        strata = self.db.execute(
            "SELECT source, stratum, SUM(tier = 1), SUM(tier >= 1) FROM review_queue GROUP BY source, stratum").fetchall()
        with WRITE_LOCK, self._tx():
            for src, stratum, have, n in strata:
                want = min(n, math.ceil(rate * n - 1e-9)) - (have or 0)
                if want <= 0:
                    continue
                cur = self.db.execute(
                    "UPDATE review_queue SET tier = 1 WHERE key IN (SELECT key FROM review_queue "
                    "WHERE source = ? AND stratum = ? AND tier = 2 ORDER BY rank LIMIT ?)", (src, stratum, want))
                promoted += cur.rowcount
        return promoted

    def _set_gold(self, gold: dict[str, str]) -> tuple[int, list[str]]:
        n, unknown = 0, []
        with WRITE_LOCK, self._tx():
            for key, answer in gold.items():
                answer = str(answer.get("decision") if isinstance(answer, dict) else answer).lower()
                if answer not in ("accept", "reject"):
                    raise ValueError(f"gold answer for {key!r} must be accept or reject, not {answer!r}")
                cur = self.db.execute("UPDATE review_queue SET gold = ? WHERE key = ?", (answer, key))
                if cur.rowcount:
                    n += 1
                else:
                    unknown.append(key)
        return n, unknown

    # -- leasing ---------------------------------------------------------------------------
    def next_item(self, reviewer: Reviewer) -> Optional[dict]:
        """Lease the next item to the reviewer (their current lease first); None when nothing is left."""
        with WRITE_LOCK:
            self.drain()
            now = self.clock()
            with self._tx():
                row = self.db.execute(
                    "SELECT key, leased_at FROM review_queue WHERE lease_reviewer = ? AND lease_until >= ? "
                    "AND state = 'open' ORDER BY leased_at LIMIT 1", (reviewer.id, now)).fetchone()
                if row:
                    key, leased_at = row
                else:
                    row = self.db.execute(
                        "SELECT q.key FROM review_queue q WHERE q.state = 'open' "
                        "AND (q.lease_until IS NULL OR q.lease_until < :now) "
                        "AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.key = q.key AND d.reviewer_id = :r) "
                        "AND NOT EXISTS (SELECT 1 FROM review_skips s WHERE s.reviewer_id = :r AND s.key = q.key) "
                        "ORDER BY q.state, q.tier, q.rank LIMIT 1", {"now": now, "r": reviewer.id}).fetchone()
                    if not row:
                        return None
                    key, leased_at = row[0], now
                self.db.execute("UPDATE review_queue SET lease_reviewer = ?, lease_until = ?, leased_at = ?, "
                                "version = version + 1 WHERE key = ?",
                                (reviewer.id, now + self.lease_seconds, leased_at, key))
            return self.item(key)

    def next_plan(self) -> str:
        """EXPLAIN QUERY PLAN of the next-item query (tests assert it walks the index)."""
        rows = self.db.execute(
            "EXPLAIN QUERY PLAN SELECT q.key FROM review_queue q WHERE q.state = 'open' "
            "AND (q.lease_until IS NULL OR q.lease_until < 0) "
            "AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.key = q.key AND d.reviewer_id = 1) "
            "AND NOT EXISTS (SELECT 1 FROM review_skips s WHERE s.reviewer_id = 1 AND s.key = q.key) "
            "ORDER BY q.state, q.tier, q.rank LIMIT 1").fetchall()
        return "\n".join(str(r[-1]) for r in rows)

    def item(self, key: str, with_lease: bool = True) -> dict:
        """What the page shows for an item: draft, metadata, checks (never another reviewer's decision)."""
        row = self._row(key)
        record = self.catalog.get(key)
        if row is None or record is None:
            raise NotFound(key)
        return {
            "key": key,
            "caption": record.caption,
            "image_url": f"/api/items/{key}/image",
            "mask_url": f"/api/items/{key}/mask" if record.mask else None,
            "version": row["version"] if with_lease else None,
            "lease_until": row["lease_until"] if with_lease else None,
            "required_reviews": row["required"],
            "priority": TIERS[row["tier"]],
            "state": row["state"],
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

    # -- decisions -------------------------------------------------------------------------
    def submit(self, reviewer: Reviewer, key: str, decision: str, version: Optional[int], caption: Optional[str] = None,
               reason: Optional[str] = None, labels: Optional[dict] = None, time_spent: Optional[float] = None,
               note: Optional[str] = None, imported: Optional[dict] = None) -> dict:
        """Record a decision on an item leased to the reviewer at `version` (or an imported one)."""
        decision, caption, reason, labels = self._validate(decision, caption, reason, labels)
        with WRITE_LOCK:
            now = self.clock() if not imported else float(imported.get("at") or self.clock())
            with self._tx():
                row = self._row(key)
                record = self.catalog.get(key)
                if row is None or record is None:
                    raise NotFound(key)
                if imported is None:
                    if row["lease_reviewer"] != reviewer.id:
                        raise Conflict("the item is not leased to you (it may have expired and gone to someone else)")
                    if version is None or int(version) != row["version"]:
                        raise Conflict(f"stale version {version} (the item is at {row['version']})")
                    if row["state"] != "open":
                        raise Conflict(f"the item is {row['state']}")
                else:
                    if row["state"] != "open":
                        raise Conflict(f"the item is {row['state']}")
                    if self.db.execute("SELECT 1 FROM review_decisions WHERE key = ? AND reviewer_id = ?",
                                       (key, reviewer.id)).fetchone():
                        raise Conflict("this reviewer already decided the item")
                server_spent = max(0.0, now - (row["leased_at"] or now)) if imported is None else None
                spent = float(time_spent) if time_spent is not None and 0 <= float(time_spent) < 86400 else server_spent
                draft = record.caption or ""
                if decision == "edit" and caption.strip() == draft.strip() and not labels:
                    decision = "accept"
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
                if labels:
                    data["labels"] = labels
                    data["labels_before"] = {"label": record.label, "defect_types": list(record.defect_types)}
                if note:
                    data["note"] = note[:2000]
                if imported:
                    data["imported"] = {k: v for k, v in imported.items() if k != "at"}
                result: dict[str, Any] = {"key": key, "decision": decision}
                if decision == "skip":
                    event = self._event(key, reviewer, "skip", data, now)
                    self.db.execute("INSERT OR REPLACE INTO review_skips VALUES (?, ?, ?)", (reviewer.id, key, event))
                    self._release(key, now)
                    result.update(event_id=event, state="open")
                    return result
                if decision == "flag":
                    event = self._event(key, reviewer, "flag", data, now)
                    self.db.execute("INSERT OR REPLACE INTO review_decisions (key, reviewer_id, event_id, decision, "
                                    "final_caption, reason, at, time_spent) VALUES (?, ?, ?, 'flag', NULL, ?, ?, ?)",
                                    (key, reviewer.id, event, reason, now, spent))
                    self._release(key, now, state="flagged")
                    result.update(event_id=event, state="flagged")
                    return result
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
            self.drain()
            return result

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
            caption = " ".join(caption.split())
        if decision == "reject":
            if reason not in REASONS:
                raise Invalid(f"a reject needs a reason: one of {', '.join(REASONS)}")
        elif decision != "flag":
            reason = None
        elif reason is not None:
            reason = str(reason)[:200]
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
        bad = [t for t in types if t not in known]
        if bad:
            raise Invalid(f"unknown defect type(s): {', '.join(bad)} (see annotation_guidelines/taxonomy.yaml)")
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

    def _release(self, key: str, now: float, state: Optional[str] = None) -> None:
        sets = "lease_reviewer = NULL, lease_until = NULL, leased_at = NULL, version = version + 1, updated_at = ?"
        args: list = [now]
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

    # -- undo ------------------------------------------------------------------------------
    def undo(self, reviewer: Reviewer, event_id: Optional[int] = None) -> dict:
        """Undo the reviewer's latest decision (or the given one) while nothing happened to the item since.

        The item is leased back to the reviewer; a resolved outcome is taken back out of the record
        (only if the record still holds it). Appends an `undo` event; the log itself is never changed.
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
                event = self.db.execute("SELECT key, reviewer_id, action, data FROM review_events WHERE id = ?",
                                        (int(event_id),)).fetchone()
                if event is None or event[1] != reviewer.id:
                    raise NotFound(f"event {event_id}")
                key, _, action, data = event
                data = json.loads(data)
                skip = self.db.execute("SELECT 1 FROM review_skips WHERE reviewer_id = ? AND event_id = ?",
                                       (reviewer.id, event_id)).fetchone()
                decided = self.db.execute("SELECT 1 FROM review_decisions WHERE reviewer_id = ? AND event_id = ?",
                                          (reviewer.id, event_id)).fetchone()
                if not skip and not decided:
                    raise Conflict("that decision is no longer in force")
                latest = self.db.execute("SELECT MAX(id) FROM review_events WHERE key = ? AND action != 'undo'",
                                         (key,)).fetchone()[0]
                if not skip and latest != event_id:
                    raise Conflict("the item changed after your decision; ask an admin to adjudicate")
                q = self._row(key)
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
                if skip and (q["state"] != "open" or self.db.execute(
                        "SELECT 1 FROM review_decisions WHERE key = ? AND reviewer_id = ?", (key, reviewer.id)).fetchone()):
                    leased = True  # nothing to hand back: the item moved on or was decided meanwhile
                if not leased:
                    self.db.execute("UPDATE review_queue SET lease_reviewer = ?, lease_until = ?, leased_at = ?, "
                                    "version = version + 1, updated_at = ? WHERE key = ?",
                                    (reviewer.id, now + self.lease_seconds, now, now, key))
            self.drain()
            return {"undone": event_id, "key": key, "action": action, "undo_event": undo_event,
                    "item": None if leased else self.item(key)}

    # -- adjudication ----------------------------------------------------------------------
    def adjudication(self, after: str = "", limit: int = 20) -> list[dict]:
        """Disputed and flagged items (admins): every decision on each, a page at a time by key."""
        rows = self.db.execute("SELECT key, state, version FROM review_queue WHERE state IN ('disputed', 'flagged') "
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

    def adjudicate(self, admin: Reviewer, key: str, decision: str, version: Optional[int],
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
                row = self._row(key)
                record = self.catalog.get(key)
                if row is None or record is None:
                    raise NotFound(key)
                if version is None or int(version) != row["version"]:
                    raise Conflict(f"stale version {version} (the item is at {row['version']})")
                if row["state"] not in ("disputed", "flagged"):
                    raise Conflict(f"the item is {row['state']}, not disputed or flagged")
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
            draft = json.loads(self.db.execute("SELECT data FROM review_events WHERE id = ?",
                                               (event_id,)).fetchone()[0]).get("draft")
            try:
                item = self.item(key, with_lease=False)
            except NotFound:
                continue
            item["caption"] = draft
            out.append({"event_id": event_id, "key": key, "decision": decision, "final_caption": final,
                        "reason": reason, "at": at, "item": item})
        return out

    def progress(self, reviewer: Optional[Reviewer] = None) -> dict:
        counts = dict.fromkeys(STATES, 0)
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM review_queue GROUP BY state"):
            counts[state] = n
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


def load_gold(path: Path) -> dict[str, str]:
    """Gold answers from YAML/JSON: `key: accept|reject` (or a list of {key, decision})."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if isinstance(data, list):
        data = {str(d["key"]): d.get("decision") for d in data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of key -> accept|reject")
    bad = [k for k in data if not valid_key(str(k))]
    if bad:
        raise ValueError(f"{path}: invalid key(s): {', '.join(map(str, bad[:5]))}")
    return {str(k): v for k, v in data.items()}

