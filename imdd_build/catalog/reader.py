"""`CatalogReader`: a read-only connection to the catalog file, for shard workers (one per process)
and for a user's `--where` filter (an SQL expression that, read through `mode=ro`, can never write)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..errors import RunError
from ..record import Record
from .db import Handle, connect

# The columns a `--where` may name: the record columns, two JSON fields as columns, and `data`.
_WHERE_COLUMNS = ("SELECT key, source, split, label, caption_status, data, "
                  "json_extract(data, '$.product') AS product, json_extract(data, '$.domain') AS domain, "
                  "json_extract(data, '$.caption_source') AS caption_source FROM records")


class CatalogReader(Handle):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = connect(self.path, readonly=True)

    def get(self, key: str) -> Record | None:
        row = self.db.execute("SELECT data FROM records WHERE key = ?", (key,)).fetchone()
        return Record.model_validate_json(row[0]) if row else None

    @staticmethod
    def _conditions(source: str | None, where: str | None) -> tuple[list[str], list]:
        if where and ";" in where:
            raise RunError("--where: one SQL expression, no ';'")
        conds, args = [], []
        if source:
            conds.append("source = ?")
            args.append(source)
        if where:
            conds.append(f"({where})")
        return conds, args

    def count_where(self, source: str | None = None, where: str | None = None) -> int:
        """How many records `source` and the SQL expression `where` select."""
        conds, args = self._conditions(source, where)
        sql = f"SELECT COUNT(*) FROM ({_WHERE_COLUMNS})" + (f" WHERE {' AND '.join(conds)}" if conds else "")
        try:
            return self.db.execute(sql, args).fetchone()[0]
        except sqlite3.Error as exc:
            raise RunError(f"--where {where!r}: {exc}") from None

    def iter_where(self, source: str | None = None, where: str | None = None, page: int = 500) -> Iterator[tuple[str, str]]:
        """(key, record JSON) of the records `source` and `where` select, in key order, read in pages."""
        conds, args = self._conditions(source, where)
        conds, args = ["key > ?", *conds], ["", *args]
        sql = f"SELECT key, data FROM ({_WHERE_COLUMNS}) WHERE {' AND '.join(conds)} ORDER BY key LIMIT {int(page)}"
        while True:
            try:
                rows = self.db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise RunError(f"--where {where!r}: {exc}") from None
            if not rows:
                return
            yield from rows
            args[0] = rows[-1][0]
