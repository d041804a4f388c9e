"""The workspace catalog: one SQLite file (WAL) holding every record, the quarantine and the runs.

Built for millions of records: every per-record statement is a primary-key or index lookup, the
CLI's filters (source, split, caption status) each have an index that also gives key order, so
paging through records never sorts or scans the table per page, and writes go in batched
transactions with `executemany`. `tests/test_scale.py` checks the query plans on 200k records.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..record import Quarantined, Record, tile_key
from .db import Handle, connect, transaction
from .hashes import DedupeTables
from .schema import migrate

_COLUMNS = ("key", "source", "split", "label", "caption_status")
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")

# The fields a caption write may set. Paid-for caption work (LLM, expert) survives a re-ingest as long
# as the original file is the same; template drafts are cheap and may state a location the new
# geometry changed, so they are redrafted.
CAPTION_FIELDS = ("caption", "caption_source", "caption_status", "caption_meta")
PROTECTED_SOURCES = ("expert",)
PROTECTED_STATUSES = ("verified", "rejected")


def is_protected(record: Record) -> bool:
    """Expert-written, verified or rejected captions belong to the reviewers: never overwritten."""
    return record.caption_source in PROTECTED_SOURCES or record.caption_status in PROTECTED_STATUSES


class Catalog(Handle):
    """Idempotent, crash-safe record storage keyed by the sample key."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path)
        try:
            migrate(self.db, self.path)
        except BaseException:
            self.db.close()
            raise

    @property
    def dedupe(self) -> DedupeTables:
        """The dedupe stage's tables (`image_hashes`, `dedupe_groups`) on this connection."""
        return DedupeTables(self.db)

    # -- records ---------------------------------------------------------------------------
    def fingerprint(self, key: str) -> str | None:
        row = self.db.execute("SELECT fingerprint FROM records WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def sample_fingerprint(self, key: str) -> str | None:
        """The fingerprint of the sample `key`: its record's, or its first tile's (`key/t00`)."""
        return self.fingerprint(key) or self.fingerprint(tile_key(key, 0))

    def get(self, key: str) -> Record | None:
        row = self.db.execute("SELECT data FROM records WHERE key = ?", (key,)).fetchone()
        return Record.model_validate_json(row[0]) if row else None

    def upsert(self, items: Iterable[tuple[Record, str]],
               replace_views: Iterable[tuple[str, list[str]]] = ()) -> int:
        """Insert or replace records (with their input fingerprints) in one transaction.

        `replace_views`: (sample key, the keys of its records now); the sample's other records (the
        whole-image record after a switch to tiles, tiles after a switch back, surplus tiles) go."""
        items = list(items)
        if not items:
            return 0
        stale = self._stale_views(list(replace_views))
        now = time.time()
        with self.transaction():
            # Records that already exist with the same original and paid-for caption work keep it;
            # the check reads two JSON fields per existing key, and parses a record only when it keeps.
            keep: dict[str, bool] = {}
            keys = [record.key for record, _ in items]
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = self.db.execute(
                    "SELECT key, json_extract(data, '$.sha256'), json_extract(data, '$.caption_source') "
                    f"FROM records WHERE key IN ({','.join('?' * len(part))})", part)
                keep.update({k: src in ("llm", "expert") and sha for k, sha, src in rows})
            rows = []
            for record, fingerprint in items:
                if keep.get(record.key) == record.sha256:
                    previous = self.get(record.key)
                    record = record.model_copy(update={f: getattr(previous, f) for f in CAPTION_FIELDS})
                rows.append((record.key, record.source, record.split, record.label, record.caption_status,
                             fingerprint, record.model_dump_json(), now))
            self.db.executemany("DELETE FROM records WHERE key = ?", [(k,) for k in stale])
            self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.db.executemany("DELETE FROM quarantine WHERE source = ? AND path = ? AND stage = 'ingest'",
                                [(record.source, record.source_path) for record, _ in items])
        return len(items)

    def _stale_views(self, samples: list[tuple[str, list[str]]]) -> list[str]:
        stale = []
        for sample_key, keys in samples:
            keep = set(keys)
            rows = self.db.execute(
                "SELECT key FROM records WHERE key = ? OR (key > ? AND key < ? AND json_extract(data, '$.parent') = ?)",
                (sample_key, f"{sample_key}/t", f"{sample_key}/u", sample_key)).fetchall()
            stale += [k for (k,) in rows if k not in keep]
        return stale

    # -- key claims of one run (collisions), on disk so memory stays flat -------------------
    def begin_key_claims(self) -> None:
        """Start an empty per-connection table of the keys this run has handed out."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS run_keys (key TEXT PRIMARY KEY, path TEXT NOT NULL)")
        self.db.execute("DELETE FROM temp.run_keys")

    def claim_key(self, key: str, path: str) -> str | None:
        """Claim `key` for `path`; returns the path that claimed it first, or None if it was free."""
        if self.db.execute("INSERT OR IGNORE INTO temp.run_keys VALUES (?, ?)", (key, path)).rowcount:
            return None
        return self.db.execute("SELECT path FROM temp.run_keys WHERE key = ?", (key,)).fetchone()[0]

    # -- captions: the one write path -----------------------------------------------------------
    def write_captions(self, updates: Mapping[str, Mapping[str, Any]], allow_protected: bool = False) -> int:
        """Set caption fields on the records *as they are now*, in one transaction: the one way caption
        fields reach the catalog (template drafts, LLM captions, check results, review decisions).

        `updates`: record key -> fields of `CAPTION_FIELDS` to set, plus optionally `_expect_caption`
        (apply only if the caption is still that text). Each record is re-read inside the transaction,
        so an expert edit or a re-ingest that landed meanwhile is neither overwritten nor reverted;
        protected captions (`is_protected`) are left alone unless `allow_protected`. Keys with no
        record are skipped. Returns the number of records written (fingerprints are kept).
        """
        if not updates:
            return 0
        for key, fields in updates.items():
            unknown = sorted(set(fields) - set(CAPTION_FIELDS) - {"_expect_caption"})
            if unknown:
                raise ValueError(f"caption write for {key!r}: {', '.join(unknown)} are not caption fields")

        def update(current: Record) -> tuple | None:
            fields = dict(updates[current.key])
            expect = fields.pop("_expect_caption", None)
            if expect is not None and current.caption != expect:
                return None
            if not allow_protected and is_protected(current):
                return None
            record = current.model_copy(update=fields)
            return record.model_dump_json(), record.caption_status
        return self._rewrite(list(updates), update, "caption_status")

    def set_captions(self, records: Iterable[Record]) -> int:
        """`write_captions` with the caption fields of `records` (protected captions included: the
        caller decided)."""
        return self.write_captions({r.key: {f: getattr(r, f) for f in CAPTION_FIELDS} for r in records},
                                   allow_protected=True)

    def set_splits(self, updates: Mapping[str, tuple[str, str, str | None]]) -> int:
        """Set (split, split_origin, sample_split) on records as they are now, in one transaction: the
        one way a stage other than ingest changes a record's split (dedupe's seeded regrouping).
        Keys with no record are skipped; records already so are not rewritten. Returns the number
        of records written (fingerprints, captions and everything else are kept)."""
        return self._rewrite_splits(sorted(updates), lambda record: updates[record.key])

    def restore_sample_splits(self, keys: Iterable[str]) -> int:
        """Put regrouped records (`split_origin: seeded-group`) back in their own seeded draw
        (`sample_split`); other records are left alone. Returns the number of records written."""
        def own(record: Record) -> tuple[str, str, str | None]:
            if record.split_origin != "seeded-group" or not record.sample_split:
                return record.split, record.split_origin, record.sample_split
            return record.sample_split, "seeded", None
        return self._rewrite_splits(sorted(set(keys)), own)

    def _rewrite_splits(self, keys: list[str], new) -> int:
        def update(current: Record) -> tuple | None:
            split, origin, sample = new(current)
            if (current.split, current.split_origin, current.sample_split) == (split, origin, sample):
                return None
            record = Record.model_validate({**current.model_dump(), "split": split, "split_origin": origin,
                                            "sample_split": sample})
            return record.model_dump_json(), record.split
        return self._rewrite(keys, update, "split")

    def _rewrite(self, keys: list[str], update, column: str) -> int:
        """Re-read `keys` inside one transaction (pages of 500) and write what `update(record)` returns:
        None (leave it) or (data JSON, value of the indexed `column`). Returns the number written."""
        if not keys:
            return 0
        now = time.time()
        rows = []
        with self.transaction():
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                found = self.db.execute(f"SELECT key, data FROM records WHERE key IN ({','.join('?' * len(part))})",
                                        part).fetchall()
                for key, data in found:
                    new = update(Record.model_validate_json(data))
                    if new is not None:
                        rows.append((*new, now, key))
            self.db.executemany(f"UPDATE records SET data = ?, {column} = ?, updated_at = ? WHERE key = ?", rows)
        return len(rows)

    def iter_records(self, source: str | None = None, split: str | None = None,
                     uncaptioned: bool = False, batch: int = 2000) -> Iterator[Record]:
        """Records in key order, read in pages so memory stays flat (each page is an index range)."""
        sql, args = self.records_page_query(source, split, uncaptioned, batch)
        while True:
            rows = self.db.execute(sql, args).fetchall()
            if not rows:
                return
            for _, data in rows:
                yield Record.model_validate_json(data)
            args[0] = rows[-1][0]

    def iter_fields(self, fields: Iterable[str], sources: Iterable[str] = (), caption_status: str | None = None,
                    batch: int = 5000) -> Iterator[tuple]:
        """Only `fields` of every record (of `sources`, default all), as tuples in key order.

        For commands that read the whole catalog (dedupe, stats, publishing): no `Record` is built,
        so a row costs its few values, and pages are key ranges, so memory stays flat. A field is a
        column (`key`, `source`, `split`, `label`, `caption_status`) or a path into the record
        (`image`, `attributes.area_fraction`); lists and objects come back as JSON text, booleans
        as 0/1, missing values as None.
        `caption_status`: only records with that status (a range of the caption-status index).
        """
        fields = list(fields)
        exprs = []
        for name in fields:
            if not _FIELD_RE.match(name):
                raise ValueError(f"invalid record field {name!r}")
            exprs.append(name if name in _COLUMNS else f"json_extract(data, '$.{name}')")
        wanted = sorted(set(sources))
        where = f"AND source IN ({','.join('?' * len(wanted))})" if wanted else ""
        status = [caption_status] if caption_status is not None else []
        if status:
            where += " AND caption_status = ?"
        sql = (f"SELECT key, {', '.join(exprs)} FROM records WHERE key > ? {where} "
               f"ORDER BY key LIMIT {int(batch)}")
        last = ""
        while True:
            rows = self.db.execute(sql, [last, *wanted, *status]).fetchall()
            if not rows:
                return
            for row in rows:
                yield row[1:]
            last = rows[-1][0]

    @staticmethod
    def records_page_query(source: str | None = None, split: str | None = None, uncaptioned: bool = False,
                           batch: int = 2000) -> tuple[str, list]:
        """The SQL of one page of `iter_records` (the first page's arguments)."""
        where, args = ["key > ?"], [""]
        if source:
            where.append("source = ?")
            args.append(source)
        if split:
            where.append("split = ?")
            args.append(split)
        if uncaptioned:
            where.append("caption_status IS NULL")
        return f"SELECT key, data FROM records WHERE {' AND '.join(where)} ORDER BY key LIMIT {int(batch)}", args

    def query_plan(self, sql: str, args: Iterable = ()) -> list[str]:
        """`EXPLAIN QUERY PLAN` details of a statement (tests assert no full scans)."""
        return [row[-1] for row in self.db.execute(f"EXPLAIN QUERY PLAN {sql}", tuple(args))]

    def count(self, **filters: str) -> int:
        where = " AND ".join(f"{k} = ?" for k in filters) or "1"
        return self.db.execute(f"SELECT COUNT(*) FROM records WHERE {where}", tuple(filters.values())).fetchone()[0]

    def counts_by(self, *columns: str, source: str | None = None) -> dict[str, int]:
        cols = ", ".join(columns)
        where, args = ("WHERE source = ?", (source,)) if source else ("", ())
        rows = self.db.execute(f"SELECT {cols}, COUNT(*) FROM records {where} GROUP BY {cols} ORDER BY {cols}", args)
        return {"/".join("none" if v is None else str(v) for v in row[:-1]): row[-1] for row in rows}

    def count_uncaptioned(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records WHERE caption_status IS NULL").fetchone()[0]

    # -- what the records say about the taxonomy (ingest and taxonomy-check summaries) ----------
    def defect_type_counts(self, source: str | None = None) -> dict[str, int]:
        """Defect type -> records naming it (of `source`, default all), by type."""
        where, args = ("WHERE source = ?", (source,)) if source else ("", ())
        return dict(self.db.execute(
            "SELECT value, COUNT(*) FROM records, json_each(records.data, '$.defect_types') "
            f"{where} GROUP BY value ORDER BY value", args).fetchall())

    def domain_counts(self) -> dict[str | None, int]:
        """Domain -> records (None for records without one), by domain."""
        return dict(self.db.execute(
            "SELECT json_extract(data, '$.domain') AS d, COUNT(*) FROM records GROUP BY d ORDER BY d").fetchall())

    def defective_source_labels(self) -> list[tuple[str, str]]:
        """The distinct (source, source label) pairs of defective records, sorted."""
        return [(source, label) for source, label in self.db.execute(
            "SELECT DISTINCT source, value FROM records, json_each(records.data, '$.source_labels') "
            "WHERE records.label = 'defective' ORDER BY source, value")]

    def unmapped_labels(self, source: str) -> list[str]:
        """The source labels of `source`'s defects that map to no defect type, sorted."""
        return [row[0] for row in self.db.execute(
            "SELECT DISTINCT json_extract(value, '$.source_label') FROM records, "
            "json_each(records.data, '$.defect_labels') WHERE source = ? "
            "AND json_extract(value, '$.type') IS NULL ORDER BY 1", (source,))]

    # -- quarantine ------------------------------------------------------------------------
    def quarantine(self, items: Iterable[Quarantined], run_id: int | None = None) -> int:
        now = time.time()
        rows = [(q.source, q.path, q.stage, q.reason, run_id, now) for q in items]
        if rows:
            with self.transaction():
                self.db.executemany("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def quarantined(self, source: str | None = None) -> list[Quarantined]:
        where, args = ("WHERE source = ?", (source,)) if source else ("", ())
        rows = self.db.execute(f"SELECT source, path, reason, stage FROM quarantine {where} ORDER BY source, path", args)
        return [Quarantined(source=s, path=p, reason=r, stage=st) for s, p, r, st in rows]

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, command: str, options: dict) -> int:
        cur = self.db.execute("INSERT INTO runs (command, options, started_at) VALUES (?, ?, ?)",
                              (command, json.dumps(options, sort_keys=True, default=str), time.time()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, summary: dict) -> None:
        self.db.execute("UPDATE runs SET finished_at = ?, summary = ? WHERE id = ?",
                        (time.time(), json.dumps(summary, sort_keys=True, default=str), run_id))

    def transaction(self):
        """`db.transaction` on this catalog's connection (joins an open one)."""
        return transaction(self.db)
