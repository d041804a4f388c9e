"""The review queue: items, leases, decisions, double review, adjudication and the append-only audit log.

Tables live in the workspace catalog file (`review_*`, created with CREATE TABLE IF NOT EXISTS):

* `review_queue`: one row per record with a draft caption, materialised with its priority
  (`tier` 0 failed checks, 1 stratified sample, 2 the rest; `rank` a seeded hash that orders a tier),
  the number of reviews it needs (2 for double review), its state (`open`, `done`, `disputed`,
  `flagged`), the current lease and its `lease_token` (a fresh random token per lease and per
  change: the API's opaque `version`). The next item is one indexed query (`review_queue_next` on
  state, tier, rank): nothing ever loads the whole queue. `review_counts` holds the items per state,
  kept by triggers inside the transaction that changes an item.
* `review_decisions`: the decisions in force, one per (item, reviewer); undo removes one.
* `review_events`: the audit log. Append-only (triggers refuse UPDATE and DELETE): who, when, what,
  time spent, guideline version, the draft and the final text with their diff, label corrections,
  and the record's caption fields before and after.
* `review_idempotency`: the answer to each (reviewer, `Idempotency-Key`), so a retried decision
  returns it instead of a conflict (kept a day).
* `review_outbox`: record changes decided but not yet written to the catalog. A decision commits its
  event and outbox row in one transaction; the change then goes through the Catalog API
  (`set_captions`, `upsert` for label corrections) and the row is removed. A crash in between is
  repaired by `drain()` on the next start, so no decision is lost and none applied twice.

A single-review item's decision reaches the record at once. A double-review item waits for its
second reviewer (who never sees the first decision); agreement (same accept/reject category and the
same final text) resolves it, anything else goes to the admins' adjudication view.

The code is split by idea: `queue_schema` (tables, vocabularies, write lock), `queue_common` (errors,
`Reviewer`, helpers, gold answers), `queue_store` (plumbing, leases released, outbox), and the
`ReviewQueue` mixins `queue_enqueue`, `queue_leasing`, `queue_decisions` and `queue_adjudication`.
Every name stays importable from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..catalog import Catalog
from .queue_adjudication import AdjudicationMixin
from .queue_common import (
    Conflict,
    Invalid,
    NotFound,
    Reviewer,
    _VERSION_LINE,
    _checks,
    _seeded,
    _snapshot,
    _unit,
    category,
    check_results,
    guideline_version,
    load_gold,
    valid_key,
    word_diff,
)
from .queue_decisions import DecisionsMixin
from .queue_enqueue import EnqueueMixin
from .queue_leasing import LeasingMixin
from .queue_schema import (
    CAPTION_FIELDS,
    DECISIONS,
    MAX_CAPTION_CHARS,
    MAX_SKIPS,
    REASONS,
    SCHEMA,
    STATES,
    TIERS,
    WRITE_LOCK,
    _Tx,
    migrate,
)
from .queue_store import QueueStore

__all__ = [
    "CAPTION_FIELDS", "DECISIONS", "MAX_CAPTION_CHARS", "MAX_SKIPS", "REASONS", "SCHEMA", "STATES", "TIERS",
    "WRITE_LOCK",
    "Conflict", "Invalid", "NotFound", "QueueStore", "ReviewQueue", "Reviewer", "category", "check_results",
    "guideline_version", "load_gold", "valid_key", "word_diff",
    "_VERSION_LINE", "_Tx", "_checks", "_seeded", "_snapshot", "_unit",
]


class ReviewQueue(EnqueueMixin, LeasingMixin, DecisionsMixin, AdjudicationMixin):
    """The queue over one catalog connection. Create one per thread; writes take `WRITE_LOCK`."""

    def __init__(self, catalog: Catalog, lease_seconds: float = 900.0, clock: Callable[[], float] = time.time):
        self.catalog = catalog
        self.db = catalog.db
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        with WRITE_LOCK:
            migrate(self.db)


def open_queue(workspace, lease_seconds: float = 900.0) -> ReviewQueue:
    """The review queue of a workspace's catalog, the file made owner-only first (it holds token
    hashes, sessions and the audit log); the caller closes `queue.catalog`."""
    from .auth import private

    queue = ReviewQueue(workspace.catalog(), lease_seconds=lease_seconds)
    private(workspace.catalog_path)
    return queue
