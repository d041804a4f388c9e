"""`ReviewQueue`: the review queue of one catalog connection, a thin facade over its services.

The queue's tables (`review_*`, created and migrated by `catalog.schema` when the catalog opens):

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
  (`write_captions`, `upsert` for label corrections) and the row is removed. A crash in between is
  repaired by `drain()` on the next start, so no decision is lost and none applied twice.

A single-review item's decision reaches the record at once. A double-review item waits for its
second reviewer (who never sees the first decision); agreement (same accept/reject category and the
same final text) resolves it, anything else goes to the admins' adjudication view.

Who owns what: `store.ReviewStore` (every SQL statement on these tables, through the catalog's
transaction helper), `outbox.Outbox` (outcomes to the records), `enqueue.EnqueueService`,
`leasing.LeaseService` (next item, item view, history, progress), `decisions.DecisionService`
(decisions, skips, flags, idempotent retries), `outcome` (validation, agreement, the record's new
fields) and `adjudication.AdjudicationService` (undo, adjudication); `common` holds the vocabularies,
errors and helpers. `ReviewQueue` wires them over one connection; create one per thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

from ..catalog import Catalog
from .adjudication import AdjudicationService
from .common import Reviewer
from .decisions import DecisionService
from .enqueue import EnqueueService
from .leasing import LeaseService
from .outbox import Outbox
from .store import ReviewStore


class ReviewQueue:
    """The queue over one catalog connection. Create one per thread; writes take `common.WRITE_LOCK`."""

    def __init__(self, catalog: Catalog, lease_seconds: float = 900.0, clock: Callable[[], float] = time.time):
        self.catalog = catalog
        self.db = catalog.db
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        self.store = ReviewStore(self.db)
        self.outbox = Outbox(self.store, catalog)
        self.enqueuer = EnqueueService(self.store, catalog, clock)
        self.leases = LeaseService(self.store, catalog, self.outbox, clock, self.lease_seconds)
        self.decisions = DecisionService(self.store, self.leases, self.outbox, clock)
        self.adjudicator = AdjudicationService(self.store, catalog, self.leases, self.decisions, self.outbox, clock)

    # -- explicit delegation (the CLI, the web app, Label Studio interop and the tests call these) --
    def enqueue(self, sample_rate: float = 0.05, double_rate: float = 0.1, seed: int = 0,
                source: Optional[str] = None, gold: Optional[dict[str, str]] = None, batch: int = 5000) -> dict:
        """See `EnqueueService.enqueue`."""
        return self.enqueuer.enqueue(sample_rate, double_rate, seed, source, gold, batch)

    def next_item(self, reviewer: Reviewer) -> Optional[dict]:
        """See `LeaseService.next_item`."""
        return self.leases.next_item(reviewer)

    def next_plan(self) -> str:
        return self.leases.next_plan()

    def item(self, key: str, with_lease: bool = True, seen: Optional[dict] = None) -> dict:
        """See `LeaseService.item`."""
        return self.leases.item(key, with_lease, seen)

    def history(self, reviewer: Reviewer, before: Optional[int] = None, limit: int = 1) -> list[dict]:
        return self.leases.history(reviewer, before, limit)

    def progress(self, reviewer: Optional[Reviewer] = None) -> dict:
        return self.leases.progress(reviewer)

    def recount(self) -> dict:
        return self.leases.recount()

    def submit(self, reviewer: Reviewer, key: str, decision: str, version: Optional[str],
               caption: Optional[str] = None, reason: Optional[str] = None, labels: Optional[dict] = None,
               time_spent: Optional[float] = None, note: Optional[str] = None, imported: Optional[dict] = None,
               idempotency_key: Optional[str] = None) -> dict:
        """See `DecisionService.submit`."""
        return self.decisions.submit(reviewer, key, decision, version, caption, reason, labels, time_spent, note,
                                     imported, idempotency_key)

    def undo(self, reviewer: Reviewer, event_id: Optional[int] = None) -> dict:
        return self.adjudicator.undo(reviewer, event_id)

    def adjudication(self, after: str = "", limit: int = 20) -> list[dict]:
        return self.adjudicator.adjudication(after, limit)

    def adjudicate(self, admin: Reviewer, key: str, decision: str, version: Optional[str],
                   caption: Optional[str] = None, reason: Optional[str] = None, labels: Optional[dict] = None) -> dict:
        """See `AdjudicationService.adjudicate`."""
        return self.adjudicator.adjudicate(admin, key, decision, version, caption, reason, labels)

    def drain(self) -> int:
        """Write pending outcomes to the records (see `Outbox`)."""
        return self.outbox.drain()

    def config(self) -> dict:
        return self.store.config()

    def reviewer(self, reviewer_id: int) -> Optional[Reviewer]:
        return self.store.reviewer(reviewer_id)

    def _row(self, key: str) -> Optional[dict]:
        """The item's queue row (the tests read its state)."""
        return self.store.row(key)


def open_queue(workspace, lease_seconds: float = 900.0) -> ReviewQueue:
    """The review queue of a workspace's catalog, the file made owner-only first (it holds token
    hashes, sessions and the audit log); the caller closes `queue.catalog`."""
    from .auth import private

    queue = ReviewQueue(workspace.catalog(), lease_seconds=lease_seconds)
    private(workspace.catalog_path)
    return queue
