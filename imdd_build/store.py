"""Content-addressed store of normalized files: the same bytes are kept once, under their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Store:
    """Files named by the sha256 of their bytes, written atomically (temp file + rename)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, data: bytes, ext: str) -> str:
        """Store `data`; return its reference `<sha256>.<ext>`. Idempotent."""
        ref = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path = self.path(ref)
        try:
            if os.stat(path).st_size == len(data):
                return ref  # already stored (same content, same name): one stat, no write
        except FileNotFoundError:
            pass
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except FileNotFoundError:  # first file of this prefix folder
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ref

    def path(self, ref: str) -> Path:
        return self.root / ref[:2] / ref

    def read(self, ref: str) -> bytes:
        return self.path(ref).read_bytes()

    def size(self, ref: str) -> int:
        return self.path(ref).stat().st_size
