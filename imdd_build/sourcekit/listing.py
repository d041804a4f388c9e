"""Reading an adapter's listing: the one shared check that a root yields at least one sample."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from .base import IMAGE_EXTS, RawSample, RootError, SourceAdapter


def open_listing(adapter: SourceAdapter) -> Iterator[RawSample | Quarantined]:
    """`adapter.samples()`, read up to its first sample before it is returned.

    The one place every adapter's "found nothing" is caught: a root (with its `--category` filter)
    that yields no sample at all is a RootError naming what the adapter expected there and what it
    found instead, before anything is written. Quarantined items read ahead are yielded first.
    """
    items = iter(adapter.samples())
    head: list[RawSample | Quarantined] = []
    for item in items:
        head.append(item)
        if not isinstance(item, Quarantined):
            return itertools.chain(head, items)
    raise RootError(no_samples_message(adapter, [q for q in head if isinstance(q, Quarantined)]))


def no_samples_message(adapter: SourceAdapter, quarantined: list[Quarantined]) -> str:
    """One line: the root, what was expected there, and what was there instead."""
    options = adapter.options  # a dict, or a typed options model
    categories = options.get("categories") if isinstance(options, dict) else getattr(options, "categories", None)
    where = f"{adapter.root} (--category {', '.join(map(str, categories))})" if categories else str(adapter.root)
    message = f"{where}: no {adapter.source_id} samples found; expected {adapter.expected}"
    if quarantined:
        first = quarantined[0]
        return f"{message}; all {len(quarantined)} item(s) found were quarantined (first: {first.path}: {first.reason})"
    return f"{message}; found {describe_files(adapter.root)}"


def describe_files(root: Path, cap: int = 100_000) -> str:
    """What a root holds, in a few words: its file count and extensions (hidden files skipped)."""
    if root.is_file():
        return f"the file {root.name}"
    suffixes: Counter[str] = Counter()
    for _, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        suffixes.update(Path(f).suffix.lower() or "(no extension)" for f in files if not f.startswith("."))
        if sum(suffixes.values()) >= cap:
            break
    if not suffixes:
        return "no files"
    images = sum(n for ext, n in suffixes.items() if ext in IMAGE_EXTS)
    kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(suffixes.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
    return f"{images} image(s) among {sum(suffixes.values())} file(s) ({kinds})"
