"""`--where` filters over record fields: `source=demo,label=defective|normal,split=train`.

Comma-separated `FIELD=VALUE` terms that must all hold; `|` separates accepted values of one field.
A list field (defect_types) matches when any of its values is accepted. `FIELD!=VALUE` excludes.
A latent row (`imdd-models precompute`) carries split, source and label as columns and every other record
field in its `fields` column (JSON text), parsed here only when a term names a field the row lacks.
"""

from __future__ import annotations

import json
import re

from imdd_build.errors import RunError

_TERM = re.compile(r"^\s*([a-z_][a-z0-9_.]*)\s*(!?=)\s*(.*?)\s*$")


def parse_where(text: str | None) -> list[tuple[str, bool, frozenset[str]]]:
    """Terms (field, negated, accepted values); RunError naming a malformed term."""
    if not text:
        return []
    terms = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _TERM.match(part)
        if not m or not m.group(3):
            raise RunError(f"--where term {part.strip()!r}: expected FIELD=VALUE[|VALUE...] or FIELD!=VALUE")
        terms.append((m.group(1), m.group(2) == "!=", frozenset(v.strip() for v in m.group(3).split("|"))))
    return terms


def _field(row: dict, name: str):
    value = row
    for part in name.split("."):  # attributes.severity
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(row: dict, terms: list[tuple[str, bool, frozenset[str]]]) -> bool:
    """True when the row satisfies every term."""
    extra = None
    for name, negated, accepted in terms:
        value = _field(row, name)
        if value is None and name.split(".")[0] not in row and isinstance(row.get("fields"), str):
            if extra is None:
                extra = json.loads(row["fields"])
            value = _field(extra, name)
        values = {str(v) for v in value} if isinstance(value, (list, tuple)) else {str(value)}
        if bool(values & accepted) == negated:
            return False
    return True


def selected(row: dict, split: str | None, terms: list[tuple[str, bool, frozenset[str]]]) -> bool:
    """Whether a raw row passes `--split` (None and "all": every split; a row without one passes) and `--where`."""
    return (split in (None, "", "all") or row.get("split") in (None, split)) and matches(row, terms)
