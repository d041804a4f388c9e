"""`DedupeTables`: the dedupe stage's two tables, `image_hashes` (a cache of each stored image's
pixel sha256 and perceptual hash) and `dedupe_groups` (the last dedupe run's groups)."""

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
