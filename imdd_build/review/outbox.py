"""`Outbox`: writing decided outcomes (the `review_outbox` rows) to the records through the Catalog API.

A decision commits its audit event and its outbox row in one transaction; `drain` then applies the
row with `Catalog.write_captions` (the one caption write path; `upsert` for a label correction) and
removes it in one more transaction, so a crash in between leaves the row for the next `drain` (every
start, every next item) and no decision is lost or applied twice.
"""

from __future__ import annotations

from ..catalog import CAPTION_FIELDS, Catalog
from .common import WRITE_LOCK
from .store import ReviewStore


class Outbox:
    """Applies the store's pending record changes to the catalog."""

    def __init__(self, store: ReviewStore, catalog: Catalog):
        self.store = store
        self.catalog = catalog

    def drain(self) -> int:
        """Write pending outcomes to the records; returns how many."""
        n = 0
        with WRITE_LOCK:
            while True:
                pending = self.store.first_pending()
                if pending is None:
                    return n
                event_id, key, after = pending
                with self.store.transaction():
                    self.apply(key, after)
                    self.store.done_pending(event_id)
                n += 1

    def apply(self, key: str, after: dict) -> None:
        """Set the record's labels (if the outcome changed them) and caption fields to `after`."""
        record = self.catalog.get(key)
        if record is None:
            return
        if record.label != after["label"] or list(record.defect_types) != after["defect_types"]:
            labelled = record.model_copy(update={"label": after["label"], "defect_types": after["defect_types"]})
            self.catalog.upsert([(labelled, self.catalog.fingerprint(key) or "")])
        self.catalog.write_captions({key: {f: after[f] for f in CAPTION_FIELDS}}, allow_protected=True)
