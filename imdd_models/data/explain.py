"""Why a read selected nothing: the one-line error that names the fix (an unknown split lists the splits there
are; a --where that matched nothing in an existing split says how many records the split has)."""

from __future__ import annotations

import difflib

from .records import ReadStats, iter_raw

_SCAN_LIMIT = 200_000  # rows read to list the splits (an error path: bounded, never a full pass over a huge set)


def splits_in(data, limit: int = _SCAN_LIMIT) -> tuple[list[str], int]:
    """(sorted splits of the rows of `data`, rows read), reading at most `limit` rows."""
    splits: set[str] = set()
    n = 0
    for row in iter_raw(data, None, None, ReadStats()):
        splits.add(str(row.get("split")))
        n += 1
        if n >= limit:
            break
    return sorted(splits), n


def no_records_message(data, split: str | None, where: str | None) -> str:
    """The error for a read of `data` (split, where) that gave no record."""
    if split not in (None, "", "all"):
        splits, _ = splits_in(data)
        if split not in splits:
            close = difflib.get_close_matches(split, splits, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return (f"{data}: no split {split!r}; {hint}splits there: {', '.join(splits) or 'none (no records)'}"
                    + ("; 'all' for every split" if splits else ""))
    scope = f" in split {split!r}" if split not in (None, "", "all") else ""
    if where:
        return f"{data}: no records{scope} match --where {where}"
    return f"{data}: no records{scope}"
