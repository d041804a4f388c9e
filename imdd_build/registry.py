"""sources.yaml: the registry of source datasets (license, domains, citation, defaults)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, field_validator
from .errors import RunError

REDISTRIBUTION = ("allowed", "noncommercial", "research_only", "forbidden", "unknown")
# Package data (a symlink to the top-level sources.yaml in a checkout; a real file in a wheel).
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "sources.yaml"


ANNOTATIONS = ("mask", "boxes", "class", "probability")
COUNT_KEYS = ("total", "train", "validation", "test", "unlabeled", "normal", "defective")


class SourceEntry(BaseModel):
    """One source dataset. `products` maps the source's product/category names to taxonomy domains;
    `domain` is the fallback; `domains` lists every domain the source covers (card, stats).
    `counts` are the published counts (keys in COUNT_KEYS); `counts_note` says how sure they are;
    `class_counts` the published images per source label (spelled as the adapter's `source_labels`).
    `seeded_split` gives the fractions for sources without an official split."""

    id: str
    name: str
    adapter: str = ""  # adapter module id; defaults to the entry id
    homepage: str = ""
    license: str
    license_note: str = ""
    redistribution: str = "unknown"
    gated: bool = False
    annotation: list[str] = Field(default_factory=list)
    official_split: list[str] = Field(default_factory=list)
    seeded_split: dict[str, float] = Field(default_factory=dict)
    resize_mode: str = "letterbox"
    citation: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    counts_note: str = ""
    class_counts: dict[str, int] = Field(default_factory=dict)
    domain: str = "unknown"
    domains: list[str] = Field(default_factory=list)
    products: dict[str, str] = Field(default_factory=dict)

    @field_validator("resize_mode")
    @classmethod
    def _known_resize_mode(cls, value: str) -> str:
        from .record import RESIZE_MODES

        if value not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, not {value!r}")
        return value

    @field_validator("redistribution")
    @classmethod
    def _known_redistribution(cls, value: str) -> str:
        if value not in REDISTRIBUTION:
            raise ValueError(f"must be one of {', '.join(REDISTRIBUTION)}, not {value!r}")
        return value

    @field_validator("annotation", mode="before")
    @classmethod
    def _annotation_list(cls, value):
        values = [value] if isinstance(value, str) else list(value or [])
        bad = [v for v in values if v not in ANNOTATIONS]
        if bad:
            raise ValueError(f"annotation must be among {', '.join(ANNOTATIONS)}, not {bad}")
        return values

    @field_validator("counts")
    @classmethod
    def _known_count_keys(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [k for k in value if k not in COUNT_KEYS]
        if bad:
            raise ValueError(f"counts keys must be among {', '.join(COUNT_KEYS)}, not {bad}")
        return value

    @property
    def adapter_id(self) -> str:
        return self.adapter or self.id

    def all_domains(self) -> list[str]:
        return list(dict.fromkeys([*self.domains, *self.products.values()] or [self.domain]))

    def domain_of(self, product: str) -> str:
        """The taxonomy domain of a product; the source's domain when the product is not listed."""
        return self.products.get(product, self.domain)


def registry_path() -> Path:
    return Path(os.environ.get("IMDD_SOURCES", DEFAULT_PATH))


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, SourceEntry]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: source registry not found (set IMDD_SOURCES)")
    raw = yaml.safe_load(path.read_text()) or {}
    entries = {}
    for sid, entry in (raw.get("sources") or {}).items():
        if entry.get("id", sid) != sid:
            raise RunError(f"{path}: source {sid}: id {entry['id']!r} differs from its key")
        try:
            entries[sid] = SourceEntry(id=sid, **{k: v for k, v in entry.items() if k != "id"})
        except Exception as exc:
            raise RunError(f"{path}: source {sid}: {exc}") from None
    return entries


def load_registry(path: Path | None = None) -> dict[str, SourceEntry]:
    return _load(Path(path or registry_path()).resolve())


def get_source(source_id: str, path: Path | None = None) -> SourceEntry:
    registry = load_registry(path)
    if source_id not in registry:
        raise KeyError(f"source {source_id!r} is not in {path or registry_path()}")
    return registry[source_id]


def markdown_table(registry: dict[str, SourceEntry]) -> str:
    """The README's table of supported sources, generated from sources.yaml."""
    lines = ["| id | dataset | domains | annotation | license | redistribution | split |",
             "|---|---|---|---|---|---|---|"]
    for e in registry.values():
        domains = ", ".join(e.all_domains())
        split = "/".join(e.official_split) if e.official_split else "seeded"
        name = f"[{e.name}]({e.homepage})" if e.homepage else e.name
        lines.append(f"| `{e.id}` | {name} | {domains} | {', '.join(e.annotation) or '-'} | {e.license} | "
                     f"{e.redistribution} | {split} |")
    return "\n".join(lines) + "\n"
