"""Evaluation protocol helpers shared by `train-seg` and `evaluate`: class splits and few-shot sampling.

A *class split file* names the classes a model is trained on (`base`) and the ones held out for zero-shot
evaluation (`novel`). It is YAML (or JSON, which is YAML) with two lists of canonical defect type names::

    # mvtec-zero-shot.yaml
    base: [scratch, crack, contamination]
    novel: [hole, fold]

A class may be in at most one list; a name in neither list is simply not part of the protocol.

*Few-shot sampling* takes exactly K labelled training records per class (the paper's 200-shot protocol).
It depends only on the records' keys, their classes, K and the seed, never on the order the records
arrive in, the machine or the number of processes: every process computes the same selection from the
same (key, classes) metadata, and the data loader shards the selection afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from imdd_build.errors import RunError


class ProtocolError(RunError):
    """A class split file or few-shot request that cannot be used; the message names the file or field."""


@dataclass(frozen=True)
class ClassSplit:
    """Base (trained-on) and novel (held-out) class names."""

    base: tuple[str, ...]
    novel: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        both = sorted(set(self.base) & set(self.novel))
        if both:
            raise ProtocolError(f"class split: {', '.join(both)} listed as both base and novel")

    def is_seen(self, name: str) -> bool:
        return name in self.base

    def to_dict(self) -> dict:
        return {"base": list(self.base), "novel": list(self.novel)}


def parse_class_list(text: str) -> tuple[str, ...]:
    """`"a, b,c"` -> ("a", "b", "c"); empty entries are dropped, order and first occurrence kept."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def load_class_split(path: str | Path) -> ClassSplit:
    """Read a class split file (see the module docstring); errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProtocolError(f"{path}: class split file not found") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: expected a mapping with 'base' and 'novel' lists")
    unknown = sorted(set(data) - {"base", "novel"})
    if unknown:
        raise ProtocolError(f"{path}: unknown field(s) {', '.join(map(str, unknown))}; allowed: base, novel")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("base", "novel"):
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ProtocolError(f"{path}: field '{name}' must be a list of class names")
        lists[name] = tuple(dict.fromkeys(v.strip() for v in value))
    if not lists["base"]:
        raise ProtocolError(f"{path}: field 'base' is empty")
    try:
        return ClassSplit(**lists)
    except ProtocolError as exc:
        raise ProtocolError(f"{path}: {exc}") from None


def _rank(seed: int, cls: str, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{cls}\x00{key}".encode(), digest_size=16).digest()


@dataclass
class ShotSelection:
    """The result of `sample_shots`: selected keys (sorted) and how many each class got."""

    keys: list[str]
    per_class: dict[str, int]
    short: dict[str, int] = field(default_factory=dict)  # classes with fewer than K samples: how many they had

    def to_dict(self) -> dict:
        return {"samples": len(self.keys), "per_class": dict(self.per_class), "short": dict(self.short)}


def sample_shots(
    records: Iterable[tuple[str, Sequence[str]]],
    shots: int,
    seed: int = 0,
    classes: Iterable[str] | None = None,
) -> ShotSelection:
    """Pick exactly `shots` records per class from (key, classes) pairs, deterministically.

    For each class, the records that carry it are ranked by a keyed hash of (seed, class, key) and the
    first `shots` are taken; a record picked for one class may also carry others (its other annotations
    are still used in training; `per_class` counts the records picked *for* each class, so it equals
    `shots` exactly unless the class has fewer, which `short` reports). `classes` restricts sampling to
    those classes (the base classes); records without any of them are never selected.
    """
    if shots < 1:
        raise ProtocolError(f"--shots must be >= 1 (got {shots})")
    wanted = set(classes) if classes is not None else None
    by_class: dict[str, list[str]] = {}
    seen_keys: set[str] = set()
    for key, record_classes in records:
        if key in seen_keys:
            raise ProtocolError(f"duplicate record key {key!r} in the few-shot pool")
        seen_keys.add(key)
        for cls in set(record_classes):
            if wanted is None or cls in wanted:
                by_class.setdefault(cls, []).append(key)
    selected: set[str] = set()
    per_class: dict[str, int] = {}
    short: dict[str, int] = {}
    for cls in sorted(by_class):
        ranked = sorted(by_class[cls], key=lambda k, c=cls: _rank(seed, c, k))
        picked = ranked[:shots]
        selected.update(picked)
        per_class[cls] = len(picked)
        if len(picked) < shots:
            short[cls] = len(picked)
    for cls in sorted(wanted or ()):
        if cls not in by_class:
            per_class[cls] = 0
            short[cls] = 0
    return ShotSelection(keys=sorted(selected), per_class=per_class, short=short)
