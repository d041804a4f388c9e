"""`DedupeTables`: the dedupe stage's tables, `image_hashes` (a cache of each stored image's pixel
sha256 and perceptual hash), `dedupe_groups` (the last dedupe run's groups) and `split_moves` (the
seeded records the last run moved into their group's split)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .db import transaction


class DedupeTables:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def hashes(self, refs: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Image ref -> (pixel sha256, pHash) for the refs already hashed."""
        found: dict[str, tuple[str, int]] = {}
        unique = list(dict.fromkeys(refs))
        for start in range(0, len(unique), 900):
            part = unique[start:start + 900]
            rows = self.db.execute("SELECT image, pixel_sha256, phash FROM image_hashes "
                                   f"WHERE image IN ({','.join('?' * len(part))})", part)
            found.update((ref, (sha, int(ph, 16))) for ref, sha, ph in rows)
        return found

    def put_hashes(self, items: Iterable[tuple[str, tuple[str, int]]]) -> None:
        """Store (image ref, (pixel sha256, pHash)) pairs in one transaction."""
        with transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO image_hashes VALUES (?, ?, ?)",
                                [(ref, sha, f"{ph:016x}") for ref, (sha, ph) in items])

    def replace_groups(self, rows: Iterable[tuple[int, str, str, int, int, int]]) -> None:
        """Replace the saved groups: rows of (group id, key, kind, radius, leakage, dropped)."""
        with transaction(self.db):
            self.db.execute("DELETE FROM dedupe_groups")
            self.db.executemany("INSERT INTO dedupe_groups VALUES (?, ?, ?, ?, ?, ?)", rows)

    def split_moves(self, sources: Iterable[str] = ()) -> dict[str, tuple[str, str, str, str]]:
        """The last run's moves (of `sources`, default all): key -> (source, sample split, split, group key)."""
        wanted = sorted(set(sources))
        where = f"WHERE source IN ({','.join('?' * len(wanted))})" if wanted else ""
        rows = self.db.execute(f"SELECT key, source, sample_split, split, group_key FROM split_moves {where} "
                               "ORDER BY key", wanted)
        return {key: (source, sample, split, group) for key, source, sample, split, group in rows}

    def replace_split_moves(self, sources: Iterable[str],
                            rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Replace the moves of `sources` (default all): rows of (key, source, sample split, split, group key)."""
        wanted = sorted(set(sources))
        with transaction(self.db):
            if wanted:
                self.db.execute(f"DELETE FROM split_moves WHERE source IN ({','.join('?' * len(wanted))})", wanted)
            else:
                self.db.execute("DELETE FROM split_moves")
            self.db.executemany("INSERT OR REPLACE INTO split_moves VALUES (?, ?, ?, ?, ?)", list(rows))
