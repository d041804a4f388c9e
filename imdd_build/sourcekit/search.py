"""The one "search below the root" helper: where inside what the user gave is the dataset?

Users point at the dataset folder, the archive's wrapper folder above it, or a folder a level or two
higher. Adapters describe what their dataset folder looks like (`probe`), and these functions walk
breadth first, in name order, hidden folders and `__MACOSX` skipped, so the shallowest match wins
and the answer does not depend on the file system's listing order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .base import sorted_dirs

T = TypeVar("T")


def levels(root: Path, depth: int, key: Callable[[Path], Any] | None = None) -> Iterator[list[Path]]:
    """`[root]`, then every folder one level down, ... down to `depth` levels below `root`.

    `key` orders each level (default: name order within each parent, parents in level order)."""
    level = [root]
    for _ in range(depth + 1):
        if key is not None:
            level = sorted(level, key=key)
        yield level
        level = [child for folder in level for child in sorted_dirs(folder)]


def shallowest(root: Path, probe: Callable[[Path], T], depth: int = 1,
               key: Callable[[Path], Any] | None = None) -> list[tuple[Path, T]]:
    """Every (folder, probe(folder)) with a truthy probe, at the shallowest level that has any."""
    for level in levels(root, depth, key):
        hits = [(folder, found) for folder in level if (found := probe(folder))]
        if hits:
            return hits
    return []


def search_below(root: Path, probe: Callable[[Path], T], depth: int = 1,
                 key: Callable[[Path], Any] | None = None) -> tuple[Path, T] | None:
    """The first (folder, probe(folder)) with a truthy probe, breadth first; None when none."""
    for level in levels(root, depth, key):
        for folder in level:
            found = probe(folder)
            if found:
                return folder, found
    return None


__all__ = ["levels", "search_below", "shallowest"]
