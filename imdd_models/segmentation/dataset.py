"""The training set of `train-seg`: which records, which classes, and the few-shot selection.

One pass over the raw rows (nothing decoded) collects each record's key, label and defect types.
Trained classes are `--classes` (canonical names or taxonomy synonyms), all defect types of the pool
(`all`), or the base classes of a class split file (`base`/`novel`, see imdd_models.protocol).
A record is used when it carries a trained class, or is normal; records whose defects are all outside
the trained classes are left out so those classes stay unseen.

With `--shots K` the lead's `sample_shots` picks exactly K records per trained class (seeded,
independent of order, machine and process count) and K normal records the same way (pseudo-class
`normal`); a class with fewer than K records uses all it has and `short` says so. Chosen rows whose
pixels do not decode are left out and counted (`bad`, with reasons): one broken image never stops a run.
The chosen rows keep their encoded bytes in memory (a few-shot set is small) and are decoded per batch
by the reader's `decode_record`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imdd_build.errors import RunError

from ..data import BadSample, ReadStats, decode_record, iter_raw
from ..protocol import load_class_split, parse_class_list, sample_shots
from .vocabulary import canonical_type, check_trained_names

NORMAL = "normal"


@dataclass
class TrainingSet:
    rows: list[dict]
    classes: list[str]
    per_class: dict[str, int] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)
    normal: int = 0
    stats: ReadStats = field(default_factory=ReadStats)

    def summary(self) -> dict:
        return {"samples": len(self.rows), "per_class": dict(self.per_class), "normal": self.normal,
                "short": dict(self.short), "read": self.stats.read, "filtered": self.stats.filtered,
                "bad": self.stats.bad, "bad_examples": self.stats.bad_examples[:5]}


def class_names(text: str) -> tuple[list[str], list[str]]:
    """`--classes` as (names, held-out names): a class split file (YAML/JSON with `base` and `novel`, see
    `imdd_models.protocol`) gives its base classes to train on and its novel ones; else `a,b,...` or `all`."""
    path = Path(text.strip())
    if path.suffix.lower() in (".yaml", ".yml", ".json") and (path.is_file() or "," not in text):
        split = load_class_split(path)
        return list(split.base), list(split.novel)
    return list(parse_class_list(text)), []


def resolve_classes(text: str, pool_types: set[str]) -> list[str]:
    """`all` -> every type in the pool (sorted); else the listed names (or a class split file's base
    classes), synonyms mapped to canonical ids."""
    if text.strip().lower() == "all":
        if not pool_types:
            raise RunError("--classes all: the training data carries no defect types")
        return sorted(pool_types)
    names = []
    for name in class_names(text)[0]:
        canon = canonical_type(name) or name
        if canon not in names:
            names.append(canon)
    if not names:
        raise RunError("--classes: no class names given")
    return names


def select(data: str, split: str | None, where: str | None, classes: str, shots: int | None,
           seed: int) -> TrainingSet:
    """Read the pool and pick the training rows (see the module docstring)."""
    stats = ReadStats()
    pool = []
    for row in iter_raw(data, split, where, stats):
        types = list(row.get("defect_types") or [])
        pool.append((row, types, row.get("label") == NORMAL and not types))
    if not pool:
        raise RunError(f"{data}: no records" + (f" in split {split!r}" if split else "")
                       + (f" matching --where {where!r}" if where else ""))
    trained = resolve_classes(classes, {t for _, types, _ in pool for t in types})
    wanted = set(trained)
    used = [(row, [t for t in types if t in wanted], normal) for row, types, normal in pool
            if normal or wanted & set(types)]
    counts = {c: sum(c in types for _, types, _ in used) for c in trained}
    check_trained_names(trained, counts, {t for _, types, _ in pool for t in types},
                        f"{data}" + (f" (split {split})" if split else ""))
    if shots is None:
        rows = _decodable([row for row, _, _ in used], stats)
        return TrainingSet(rows, trained, counts, {c: 0 for c, n in counts.items() if n == 0},
                           sum(n for _, _, n in used), stats)
    defective = sample_shots(((r["key"], types) for r, types, normal in used if not normal), shots, seed, trained)
    normals = sample_shots(((r["key"], [NORMAL]) for r, _, normal in used if normal), shots, seed, [NORMAL])
    keep = set(defective.keys) | set(normals.keys)
    rows = _decodable(sorted((row for row, _, _ in used if row["key"] in keep), key=lambda r: r["key"]), stats)
    short = dict(defective.short)
    if normals.short.get(NORMAL, shots) < shots and any(n for _, _, n in used):
        short[NORMAL] = normals.short[NORMAL]
    return TrainingSet(rows, trained, dict(defective.per_class), short, normals.per_class.get(NORMAL, 0), stats)


def _decodable(rows: list[dict], stats: ReadStats) -> list[dict]:
    """The rows whose pixels decode; the others are counted as bad (their reason kept) and left out."""
    good = []
    for row in rows:
        try:
            decode_record(row)
        except BadSample as exc:
            stats.add_bad(str(exc))
            continue
        good.append(row)
    return good
