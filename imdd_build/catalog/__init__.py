"""The workspace catalog: one SQLite file (WAL) that owns every table of a workspace.

* `schema`: every table, as numbered migrations checked at open (`SCHEMA_VERSION`).
* `db`: the one way to open the file (`connect`) and the one transaction helper (`transaction`).
* `core.Catalog`: records, captions (the one write path, `write_captions`), quarantine, runs.
* `hashes.DedupeTables` (`Catalog.dedupe`): the dedupe stage's hash cache and groups.
* `reader.CatalogReader`: read-only access for shard workers and a user's `--where`.

The LLM tables (`caption.cache`) and the review tables (`review.store`, `review.auth`) keep small
repository classes of their own, on a `Catalog`'s connection and through `db.transaction`.
"""

from .core import CAPTION_FIELDS, PROTECTED_SOURCES, PROTECTED_STATUSES, Catalog, is_protected
from .db import connect, transaction
from .reader import CatalogReader
from .schema import SCHEMA_VERSION, SchemaError

__all__ = ["CAPTION_FIELDS", "PROTECTED_SOURCES", "PROTECTED_STATUSES", "SCHEMA_VERSION", "Catalog",
           "CatalogReader", "SchemaError", "connect", "is_protected", "transaction"]
