"""`EnqueueMixin`: filling the review queue from the catalog's drafts, stratified sampling and gold answers."""

from __future__ import annotations

import math
from typing import Optional

from .queue_common import _checks, _seeded, _unit
from .queue_schema import WRITE_LOCK
from .queue_store import QueueStore
from ..errors import RunError


class EnqueueMixin(QueueStore):
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
                raise RunError(f"--{name.replace('_', '-')} must be between 0 and 1, not {rate}")
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
                    cur = self.db.executemany(  # rowcount: rows inserted, not the count triggers' updates
                        "INSERT OR IGNORE INTO review_queue (key, source, stratum, tier, rank, required, "
                        "enqueued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", todo)
                    added += max(cur.rowcount, 0)
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
                    raise RunError(f"gold answer for {key!r} must be accept or reject, not {answer!r}")
                cur = self.db.execute("UPDATE review_queue SET gold = ? WHERE key = ?", (answer, key))
                if cur.rowcount:
                    n += 1
                else:
                    unknown.append(key)
        return n, unknown
