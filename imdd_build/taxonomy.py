"""annotation_guidelines/taxonomy.yaml: domains (and later canonical defect types)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

GUIDELINES_DIR = Path(__file__).resolve().parent.parent / "annotation_guidelines"


def taxonomy_path() -> Path:
    return Path(os.environ.get("IMDD_TAXONOMY", GUIDELINES_DIR / "taxonomy.yaml"))


@lru_cache(maxsize=4)
def _domains(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: taxonomy not found (set IMDD_TAXONOMY)")
    return (yaml.safe_load(path.read_text()) or {}).get("domains") or {}


def domain_name(domain: str) -> str:
    """How captions speak of a domain: its taxonomy name, else the id with spaces."""
    entry = _domains(taxonomy_path().resolve()).get(domain) or {}
    return entry.get("name") or domain.replace("_", " ")
