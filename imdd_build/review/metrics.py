"""Review metrics: coverage, per-reviewer throughput, agreement on double-reviewed items, gold accuracy
(the numbers come from `report_store.ReportStore`'s aggregates; this module does the arithmetic)."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Optional

from .common import STATES, TIERS, category
from .queue import ReviewQueue
from .report_store import ReportStore


def percent_agreement(a: Sequence[str], b: Sequence[str]) -> Optional[float]:
    if len(a) != len(b):
        raise ValueError("the two raters must rate the same items")
    return sum(x == y for x, y in zip(a, b)) / len(a) if a else None


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> Optional[float]:
    """Cohen's kappa of two raters: (p_o - p_e) / (1 - p_e); 1.0 when both always give the same one label."""
    if len(a) != len(b):
        raise ValueError("the two raters must rate the same items")
    n = len(a)
    if not n:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def normalized_edit_distance(s: str, t: str) -> float:
    """Word-level Levenshtein distance divided by the longer caption's word count (0 same, 1 nothing shared)."""
    a, b = (s or "").split(), (t or "").split()
    if not a and not b:
        return 0.0
    return edit_distance(a, b) / max(len(a), len(b))


def _rate(n: int, d: int) -> Optional[float]:
    return round(n / d, 4) if d else None


def coverage(q: ReviewQueue) -> dict:
    """Per (source, stratum), per source and per defect type: queued, sampled, reviewed and the coverage."""
    strata: dict[str, dict] = {}
    reports = ReportStore(q.db)
    for source, stratum, tier, state, n in reports.queue_groups():
        s = strata.setdefault(f"{source}/{stratum}", {"source": source, "defect_type": stratum, "queued": 0,
                                                      "failed_checks": 0, "sampled": 0, "reviewed": 0,
                                                      "sampled_reviewed": 0, "verified": 0, "rejected": 0})
        s["queued"] += n
        s["failed_checks"] += n if tier == 0 else 0
        s["sampled"] += n if tier == 1 else 0
        if state == "done":
            s["reviewed"] += n
            s["sampled_reviewed"] += n if tier == 1 else 0
    for (source, stratum, outcome, n) in reports.outcome_groups():
        s = strata[f"{source}/{stratum}"]
        s["rejected" if outcome == "reject" else "verified"] += n
    catalog_by_source = q.catalog.counts_by("source")

    def roll(group_key: str) -> dict:
        out: dict[str, dict] = {}
        for s in strata.values():
            g = out.setdefault(s[group_key], Counter())
            g.update({k: v for k, v in s.items() if isinstance(v, int)})
        return {k: _finish(dict(v)) for k, v in sorted(out.items())}

    by_source = roll("source")
    for source, s in by_source.items():
        s["catalog_records"] = catalog_by_source.get(source, 0)
        s["catalog_coverage"] = _rate(s["reviewed"], s["catalog_records"])
    return {"by_stratum": {k: _finish(v) for k, v in sorted(strata.items())}, "by_source": by_source,
            "by_defect_type": roll("defect_type")}


def _finish(s: dict) -> dict:
    s["coverage"] = _rate(s["reviewed"], s["queued"])
    s["sample_coverage"] = _rate(s["sampled_reviewed"], s["sampled"])
    s["rejection_rate"] = _rate(s["rejected"], s["reviewed"])
    return s


def throughput(q: ReviewQueue, now: Optional[float] = None) -> dict:
    now = now or time.time()
    out: dict[str, dict] = {}
    reports = ReportStore(q.db)
    per: dict[str, list] = defaultdict(list)
    for name, decision, at, spent in reports.decisions_by_reviewer():
        per[name].append((decision, at, spent))
    skips = {name: n for name, n in reports.skips_by_reviewer().items() if n}
    for name in sorted(set(per) | set(skips)):
        items = per.get(name, [])
        reviewed = [i for i in items if i[0] != "flag"]
        spent = [i[2] for i in reviewed if i[2] is not None]
        active_h = sum(spent) / 3600.0
        out[name] = {
            "decisions": len(reviewed), "by_decision": dict(Counter(i[0] for i in items)),
            "skips": skips.get(name, 0),
            "last_24h": sum(1 for i in reviewed if i[1] >= now - 86400),
            "median_seconds": round(statistics.median(spent), 2) if spent else None,
            "items_per_active_hour": round(len(spent) / active_h, 1) if active_h > 0 else None,
            "first_at": reviewed[0][1] if reviewed else None, "last_at": reviewed[-1][1] if reviewed else None,
        }
    return out


def first_answers(q: ReviewQueue) -> dict[str, list[tuple[str, Optional[str]]]]:
    """Per double-reviewed item, the first answer of each of its first two reviewers, from the audit log:
    (decision, final caption). Later undos and re-answers do not count, so undoing cannot raise agreement."""
    rows = ReportStore(q.db).double_review_answers()
    out: dict[str, list] = {}
    seen: set[tuple[str, int]] = set()
    for key, reviewer_id, action, data in rows:
        answers = out.setdefault(key, [])
        if (key, reviewer_id) in seen or len(answers) >= 2:
            continue
        seen.add((key, reviewer_id))
        data = json.loads(data)
        final = data.get("caption") if action == "edit" else (data.get("draft") if action == "accept" else None)
        answers.append((action, final))
    return {k: v for k, v in out.items() if len(v) == 2}


def agreement(q: ReviewQueue) -> dict:
    """Each reviewer's first answer on each double-reviewed item (from the audit log): percent agreement
    and Cohen's kappa on accept/reject (edit counts as accept), and the mean normalized word edit
    distance between the two final captions where both kept one."""
    a: list[str] = []
    b: list[str] = []
    distances: list[float] = []
    for (first, second) in first_answers(q).values():
        a.append(category(first[0]))
        b.append(category(second[0]))
        if first[1] is not None and second[1] is not None:
            distances.append(normalized_edit_distance(first[1], second[1]))
    kappa = cohen_kappa(a, b)
    pa = percent_agreement(a, b)
    return {"pairs": len(a), "percent_agreement": None if pa is None else round(pa, 4),
            "cohen_kappa": None if kappa is None else round(kappa, 4),
            "caption_pairs": len(distances),
            "mean_normalized_edit_distance": round(sum(distances) / len(distances), 4) if distances else None,
            "disputed": ReportStore(q.db).count_in_state("disputed")}


def gold(q: ReviewQueue) -> dict:
    reports = ReportStore(q.db)
    configured = reports.gold_items()
    per: dict[str, Counter] = defaultdict(Counter)
    for name, decision, answer in reports.gold_answers():
        per[name]["answered"] += 1
        per[name]["correct"] += category(decision) == answer
    reviewers = {name: {"answered": c["answered"], "correct": c["correct"],
                        "accuracy": _rate(c["correct"], c["answered"])} for name, c in sorted(per.items())}
    answered = sum(c["answered"] for c in per.values())
    correct = sum(c["correct"] for c in per.values())
    return {"configured": configured, "answered": answered, "correct": correct,
            "accuracy": _rate(correct, answered), "by_reviewer": reviewers}


def review_status(q: ReviewQueue) -> dict[str, Any]:
    reports = ReportStore(q.db)
    progress = q.progress()
    tiers = {TIERS[t]: n for t, n in reports.items_by_tier().items()}
    events = reports.events_by_action()
    config = q.config()
    return {
        "command": "review status",
        "queue": {**{s: progress[s] for s in STATES}, "items": progress["items"], "leased": progress["leased"],
                  "by_priority": tiers},
        "config": config,
        "coverage": coverage(q),
        "throughput": throughput(q),
        "agreement": agreement(q),
        "gold": gold(q),
        "events": events,
        "pending_writes": reports.pending_writes(),
        "reviewers": [dict(zip(("name", "admin", "active", "origin"), r)) for r in reports.reviewers()],
        "note": "agreement uses each of the first two reviewers' first answer (audit log) on double-reviewed items; "
                "edit counts as accept",
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def serve_counts(q: ReviewQueue) -> tuple[int, int]:
    """(items in the queue, active reviewers): what `review serve` announces at start-up."""
    reports = ReportStore(q.db)
    return reports.items(), reports.active_reviewers()
