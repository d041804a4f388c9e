"""Shared pieces of the review queue: its vocabularies and write lock, its errors, `Reviewer`, guideline
versions, key checks, seeded hashing, word diffs, caption checks and record snapshots, and loading gold
answers. No SQL here (that is `store.ReviewStore`'s)."""

from __future__ import annotations

import difflib
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..catalog import CAPTION_FIELDS
from ..catalog.schema import REVIEW_STATES
from ..errors import RunError
from ..record import KEY_RE, Record
from ..taxonomy import GUIDELINES_DIR

DECISIONS = ("accept", "edit", "reject", "skip", "flag")
REASONS = ("wrong_defect_label", "wrong_mask", "bad_image", "caption_unfixable")
STATES = REVIEW_STATES  # the catalog schema's vocabulary (`review_counts` holds one row per state)
TIERS = {0: "failed_checks", 1: "sample", 2: "rest"}
MAX_CAPTION_CHARS = 4000
MAX_SKIPS = 100  # a reviewer's remembered skips: the next-item walk never passes more than these

# One writer at a time inside a process (the server's threads); SQLite's write lock (taken up front by
# `catalog.transaction`) orders processes.
WRITE_LOCK = threading.RLock()

_VERSION_LINE = re.compile(r"\(version\s+([\w.-]+)\)|^version:\s*([\w.-]+)", re.IGNORECASE | re.MULTILINE)


class NotFound(LookupError):
    """The key is not in the queue (or the catalog)."""


class Conflict(RuntimeError):
    """Stale version, an item not leased to the caller, or a state that forbids the action (HTTP 409)."""


class Invalid(RunError):
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


def seeded(seed: int, salt: str, key: str) -> int:
    """A seeded 63-bit hash of `key` (the queue's `rank`)."""
    digest = hashlib.blake2b(f"{seed}\0{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # fits SQLite's signed 64-bit INTEGER


def unit(seed: int, salt: str, key: str) -> float:
    """A seeded hash of `key` as a number in [0, 1)."""
    return seeded(seed, salt, key) / float(1 << 63)


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


def run_checks(record: Record) -> Optional[dict]:
    """The caption checks of `record` now (None if the checks are not available)."""
    try:
        from ..caption.checks import check_record
    except ImportError:  # pragma: no cover - checks ship with the caption package
        return None
    return check_record(record).as_meta()


def check_results(record: Record) -> dict:
    """The check results shown beside the image: computed now, else what caption_meta carries."""
    live = run_checks(record) if record.caption else None
    if live is not None:
        return {**live, "computed": "live"}
    stored = (record.caption_meta or {}).get("checks")
    if isinstance(stored, dict):
        return {**stored, "computed": "caption_meta"}
    return {"passed": None, "results": {}, "reasons": [], "computed": "none"}


def snapshot(record: Record) -> dict:
    """The record's caption fields and labels (what an outcome changes; the outbox writes it back)."""
    data = {f: getattr(record, f) for f in CAPTION_FIELDS}
    data["caption_meta"] = dict(data["caption_meta"] or {})
    data["label"] = record.label
    data["defect_types"] = list(record.defect_types)
    return data


def load_gold(path: Path) -> dict[str, str]:
    """Gold answers from YAML/JSON: `key: accept|reject` (or a list of {key, decision})."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if isinstance(data, list):
        data = {str(d["key"]): d.get("decision") for d in data}
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a mapping of key -> accept|reject")
    bad = [k for k in data if not valid_key(str(k))]
    if bad:
        raise RunError(f"{path}: invalid key(s): {', '.join(map(str, bad[:5]))}")
    return {str(k): v for k, v in data.items()}
