"""Source adapters, one module per source dataset, looked up by sources.yaml id."""

from __future__ import annotations

from .base import RawSample, RootError, SourceAdapter
from .demo import DemoAdapter
from .mvtec import MVTecAdapter
from .visa import VisAAdapter

ADAPTERS: dict[str, type[SourceAdapter]] = {a.id: a for a in (MVTecAdapter, VisAAdapter, DemoAdapter)}


def get_adapter(source: str) -> type[SourceAdapter]:
    try:
        return ADAPTERS[source]
    except KeyError:
        raise RootError(f"unknown source {source!r}; known: {', '.join(sorted(ADAPTERS))}") from None


__all__ = ["ADAPTERS", "RawSample", "RootError", "SourceAdapter", "get_adapter"]
