"""`--where` filters over record fields: `source=demo,label=defective|normal,split=train`.

Comma-separated `FIELD=VALUE` terms that must all hold; `|` separates accepted values of one field.
A list field (defect_types) matches when any of its values is accepted. `FIELD!=VALUE` excludes.
A latent row (`imdd-models precompute`) carries split, source and label as columns and every other record
field in its `fields` column (JSON text), parsed here only when a term names a field the row lacks.
"""

from __future__ import annotations

import difflib
import json
import re

from imdd_build.errors import RunError

_TERM = re.compile(r"^\s*([a-z_][a-z0-9_.]*)\s*(!?=)\s*(.*?)\s*$")


def record_fields() -> list[str]:
    """The fields `--where` can name: a shard record's (imdd_build.record.Record, pixels aside) and has_mask /
    has_class_mask; a dotted name (attributes.severity) starts with one of them."""
    from imdd_build.record import Record
    return sorted((set(Record.model_fields) - {"image", "mask", "class_mask"}) | {"has_mask", "has_class_mask"})


def _check_field(name: str, part: str) -> None:
    fields = record_fields()
    head = name.split(".")[0]
    if head in fields:
        return
    close = difflib.get_close_matches(head, fields, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise RunError(f"--where term {part.strip()!r}: no field {head!r} in the records; {hint}fields: "
                   f"{', '.join(fields)}")


def parse_where(text: str | None) -> list[tuple[str, bool, frozenset[str]]]:
    """Terms (field, negated, accepted values); RunError naming a malformed term or an unknown field (with the
    valid ones)."""
    if not text:
        return []
    terms = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _TERM.match(part)
        if not m or not m.group(3):
            raise RunError(f"--where term {part.strip()!r}: expected FIELD=VALUE[|VALUE...] or FIELD!=VALUE")
        _check_field(m.group(1), part)
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
