"""`EnqueueService`: filling the review queue from the catalog's drafts, stratified sampling and gold answers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Optional

from ..catalog import Catalog
from ..errors import RunError
from .common import WRITE_LOCK, run_checks, seeded, unit
from .store import ReviewStore

# What enqueue reads of each record (`Catalog.iter_fields`: no record is parsed).
_FIELDS = ("key", "source", "label", "caption_status", "defect_types", "caption_meta.checks.passed",
           "caption_meta.review_priority", "caption")


class EnqueueService:
    """Queues drafts (idempotent), samples each stratum and sets gold answers."""

    def __init__(self, store: ReviewStore, catalog: Catalog, clock: Callable[[], float]):
        self.store = store
        self.catalog = catalog
        self.clock = clock

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
        seen = added = failed = 0
        for drafts in self._draft_batches(source, batch):
            todo = []
            for key, src, label, first_type, passed, priority in drafts:
                seen += 1
                if passed is None and priority is None:
                    record = self.catalog.get(key)
                    result = run_checks(record) if record else None
                    passed = result["passed"] if result else 1
                bad = passed in (0, False) or priority == 0
                failed += bad
                stratum = first_type if label == "defective" and first_type else label
                required = 2 if unit(seed, "double", key) < double_rate else 1
                todo.append((key, src, stratum, 0 if bad else 2, seeded(seed, "rank", key), required, now, now))
            with WRITE_LOCK, self.store.transaction():
                added += self.store.add_items(todo)
        sampled = self._sample(sample_rate)
        gold_set, gold_unknown = self._set_gold(gold or {})
        with WRITE_LOCK, self.store.transaction():
            self.store.set_config({"sample_rate": sample_rate, "double_rate": double_rate, "seed": seed})
        return {"command": "review enqueue", "drafts_seen": seen, "added": added, "failed_checks": failed,
                "sampled_added": sampled, "sample_rate": sample_rate, "double_rate": double_rate, "seed": seed,
                "gold": gold_set, "gold_unknown_keys": gold_unknown, "queue": self.store.size()}

    def _draft_batches(self, source: Optional[str], batch: int) -> Iterator[list[tuple]]:
        """(key, source, label, first defect type, checks passed, review priority) of the drafts with a
        caption, in key order, `batch` at a time."""
        drafts: list[tuple] = []
        for key, src, label, status, types, passed, priority, caption in self.catalog.iter_fields(
                _FIELDS, sources=[source] if source else (), caption_status="draft", batch=batch):
            if status != "draft" or caption is None:
                continue
            first_type = (json.loads(types) or [None])[0] if types else None
            drafts.append((key, src, label, first_type, passed, priority))
            if len(drafts) >= batch:
                yield drafts
                drafts = []
        if drafts:
            yield drafts

    def _sample(self, rate: float) -> int:
        """Promote the lowest-ranked tier-2 items of each stratum until it holds ceil(rate * n) sampled."""
        promoted = 0
        strata = self.store.strata()
        with WRITE_LOCK, self.store.transaction():
            for src, stratum, have, n in strata:
                want = min(n, math.ceil(rate * n - 1e-9)) - (have or 0)
                if want > 0:
                    promoted += self.store.promote(src, stratum, want)
        return promoted

    def _set_gold(self, gold: dict[str, str]) -> tuple[int, list[str]]:
        n, unknown = 0, []
        with WRITE_LOCK, self.store.transaction():
            for key, answer in gold.items():
                answer = str(answer.get("decision") if isinstance(answer, dict) else answer).lower()
                if answer not in ("accept", "reject"):
                    raise RunError(f"gold answer for {key!r} must be accept or reject, not {answer!r}")
                if self.store.set_gold(key, answer):
                    n += 1
                else:
                    unknown.append(key)
        return n, unknown
