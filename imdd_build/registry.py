"""sources.yaml: the registry of source datasets (license, domains, citation, defaults)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

REDISTRIBUTION = ("allowed", "noncommercial", "research_only", "forbidden", "unknown")
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "sources.yaml"


class SourceEntry(BaseModel):
    id: str
    name: str
    homepage: str = ""
    license: str
    license_note: str = ""
    redistribution: str = "unknown"
    annotation: str = ""
    official_split: list[str] = Field(default_factory=list)
    resize_mode: str = "letterbox"
    citation: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    domain: str = "unknown"
    products: dict[str, str] = Field(default_factory=dict)

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
    return {sid: SourceEntry(id=sid, **entry) for sid, entry in (raw.get("sources") or {}).items()}


def load_registry(path: Path | None = None) -> dict[str, SourceEntry]:
    return _load(Path(path or registry_path()).resolve())


def get_source(source_id: str, path: Path | None = None) -> SourceEntry:
    registry = load_registry(path)
    if source_id not in registry:
        raise KeyError(f"source {source_id!r} is not in {path or registry_path()}")
    return registry[source_id]
