"""The one way to open the catalog's SQLite file and the one transaction helper.

Every stage and every repository class (records, LLM answers and batches, review tables) writes
through `transaction(db)`: `BEGIN IMMEDIATE` (the write lock is taken up front, so two writers never
deadlock upgrading a read lock), `COMMIT` on success, `ROLLBACK` on any exception. It nests: inside
an open transaction it joins the outer one, so a repository method can be called alone or as part
of a caller's larger transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

BUSY_TIMEOUT_S = 60


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions only through `transaction`).

    `readonly`: opened with `mode=ro`, so nothing read through it (a user's `--where`) can write;
    the file must exist."""
    if readonly:
        return sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None)
    db = sqlite3.connect(Path(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache, whatever the catalog size
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK` on an exception); joins an open transaction."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_H = TypeVar("_H", bound="Handle")


class Handle:
    """An owner of one connection (`db`), closed by `close()` or at the end of a `with` block."""

    db: sqlite3.Connection

    def close(self) -> None:
        self.db.close()

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
