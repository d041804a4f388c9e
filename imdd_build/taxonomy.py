"""annotation_guidelines/taxonomy.yaml: domains, canonical defect types, and source label mappings.

`Taxonomy.resolve(source, label)` is the single place a source's own spelling becomes a canonical
defect type: the source's own table first (exact, then case/separator-insensitive), then the
canonical ids and their synonyms. Ingest stores both the canonical type and the source spelling.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

# Package data (a symlink to the top-level annotation_guidelines/ in a checkout; real files in a wheel).
GUIDELINES_DIR = Path(__file__).resolve().parent / "data" / "annotation_guidelines"
NORMAL = "normal"
_SEP = re.compile(r"[^a-z0-9]+")


def norm_label(label: str) -> str:
    """`Edge-Loc`, `edge loc`, `EDGE_LOC` -> `edge_loc`."""
    return _SEP.sub("_", label.strip().lower()).strip("_")


def taxonomy_path() -> Path:
    return Path(os.environ.get("IMDD_TAXONOMY", GUIDELINES_DIR / "taxonomy.yaml"))


@dataclass(frozen=True)
class Resolved:
    source_label: str
    type: str | None  # canonical defect type; None when normal or unmapped
    part: str | None = None
    normal: bool = False

    @property
    def mapped(self) -> bool:
        return self.normal or self.type is not None


@dataclass
class Taxonomy:
    domains: dict[str, dict]
    defect_types: dict[str, dict]
    sources: dict[str, dict[str, object]]
    version: int = 1
    proper_terms: tuple[str, ...] = ()  # spelled as written in captions ("PCB"), whatever the source's case
    _global: dict[str, str] = field(default_factory=dict, repr=False)
    _source_norm: dict[str, dict[str, object]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for tid, entry in self.defect_types.items():
            self._global.setdefault(norm_label(tid), tid)
            self._global.setdefault(norm_label(entry.get("name") or tid), tid)
        for tid, entry in self.defect_types.items():  # synonyms after all ids: an id always wins
            for syn in entry.get("synonyms") or []:
                self._global.setdefault(norm_label(str(syn)), tid)
        for sid, table in self.sources.items():
            self._source_norm[sid] = {norm_label(str(k)): v for k, v in (table or {}).items()}

    # -- lookups ---------------------------------------------------------------------------
    def resolve(self, source: str, label: str, extra: dict[str, object] | None = None) -> Resolved:
        """Map one source label; `extra` is a user label map (generic adapters) checked first."""
        for table, normalized in ((extra or {}, False), (self.sources.get(source) or {}, False),
                                  (self._source_norm.get(source) or {}, True)):
            value = table.get(norm_label(label) if normalized else label)
            if value is not None:
                return self._value(label, value)
        if extra:
            value = {norm_label(str(k)): v for k, v in extra.items()}.get(norm_label(label))
            if value is not None:
                return self._value(label, value)
        tid = self._global.get(norm_label(label))
        if tid is not None:
            return Resolved(label, tid)
        if norm_label(label) in {"normal", "good", "ok", "none", "defect_free", "no_defect"}:
            return Resolved(label, None, normal=True)
        return Resolved(label, None)

    def _value(self, label: str, value: object) -> Resolved:
        if isinstance(value, dict):
            tid, part = value.get("type"), value.get("part")
        else:
            tid, part = str(value), None
        if tid == NORMAL:
            return Resolved(label, None, normal=True)
        if tid not in self.defect_types:
            # a mapping to a type that does not exist is itself unmapped (taxonomy check lists it)
            return Resolved(label, None, part)
        return Resolved(label, tid, part)

    def cased(self, text: str) -> str:
        """Words that are proper terms spelled as the taxonomy writes them: `pcb1` -> `PCB1`."""
        terms = {t.lower(): t for t in self.proper_terms}

        def fix(m: re.Match) -> str:
            word, digits = m.group(1), m.group(2)
            return terms.get(word.lower(), word) + digits
        return re.sub(r"\b([A-Za-z]+)(\d*)\b", fix, text) if terms else text

    def merged_into(self, source: str, tid: str) -> list[str]:
        """The source's own labels that the taxonomy maps onto one canonical type (several: a merge)."""
        out = []
        for label, value in (self.sources.get(source) or {}).items():
            target = value.get("type") if isinstance(value, dict) else value
            if target == tid:
                out.append(str(label))
        return out

    def domain_name(self, domain: str) -> str:
        entry = self.domains.get(domain) or {}
        return entry.get("name") or domain.replace("_", " ")

    def defect_name(self, defect_type: str) -> str:
        entry = self.defect_types.get(defect_type) or {}
        return entry.get("name") or defect_type.replace("_", " ")

    def domain_path(self, domain: str) -> list[str]:
        """Root-first ancestry of a domain: ['metal', 'steel_strip']."""
        path, seen = [], set()
        while domain and domain not in seen and domain in self.domains:
            seen.add(domain)
            path.append(domain)
            domain = self.domains[domain].get("parent")
        return path[::-1]

    def problems(self) -> list[str]:
        """Internal consistency: unknown parents, types without definitions, mappings to nothing."""
        out = []
        for did, entry in self.domains.items():
            parent = entry.get("parent")
            if parent and parent not in self.domains:
                out.append(f"domain {did}: parent {parent!r} is not a domain")
        for tid, entry in self.defect_types.items():
            if not (entry.get("definition") or "").strip():
                out.append(f"defect type {tid}: no definition")
        return out


@lru_cache(maxsize=4)
def _load(path: Path) -> Taxonomy:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: taxonomy not found (set IMDD_TAXONOMY)")
    raw = yaml.safe_load(path.read_text()) or {}
    return Taxonomy(domains=raw.get("domains") or {}, defect_types=raw.get("defect_types") or {},
                    sources={str(k): v or {} for k, v in (raw.get("sources") or {}).items()},
                    version=int(raw.get("version") or 1),
                    proper_terms=tuple(str(t) for t in raw.get("proper_terms") or ()))


@lru_cache(maxsize=8)
def _resolved_default(env_value: str | None) -> Path:
    return Path(env_value or GUIDELINES_DIR / "taxonomy.yaml").resolve()


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """The taxonomy (cached per file; called per caption, so no filesystem work on a hit)."""
    if path is None:
        return _load_default(os.environ.get("IMDD_TAXONOMY"))
    return _load(Path(path).resolve())


@lru_cache(maxsize=8)
def _load_default(env_value: str | None) -> Taxonomy:
    """The configured taxonomy keyed by the variable's text: one dict lookup per call."""
    return _load(_resolved_default(env_value))


def domain_name(domain: str) -> str:
    """How captions speak of a domain: its taxonomy name, else the id with spaces."""
    return load_taxonomy().domain_name(domain)


def defect_name(defect_type: str) -> str:
    return load_taxonomy().defect_name(defect_type)
