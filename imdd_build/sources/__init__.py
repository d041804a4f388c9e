"""Source adapters, one module per source dataset, looked up by id.

Every module in this package is imported and every `SourceAdapter` subclass with an `id` is
registered, so adding an adapter means adding a module (and its sources.yaml entry).
"""

from __future__ import annotations

import importlib
import pkgutil

from ..sourcekit.base import RawSample, RootError, SourceAdapter


def _discover() -> dict[str, type[SourceAdapter]]:
    found: dict[str, type[SourceAdapter]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, SourceAdapter) and obj is not SourceAdapter \
                    and getattr(obj, "id", None) and obj.__module__ == module.__name__:
                if obj.id in found and found[obj.id] is not obj:
                    raise RuntimeError(f"two adapters claim id {obj.id!r}: {found[obj.id]} and {obj}")
                found[obj.id] = obj
    return dict(sorted(found.items()))


ADAPTERS: dict[str, type[SourceAdapter]] = _discover()


def get_adapter(source: str) -> type[SourceAdapter]:
    try:
        return ADAPTERS[source]
    except KeyError:
        raise RootError(f"unknown source {source!r}; known: {', '.join(sorted(ADAPTERS))}") from None


__all__ = ["ADAPTERS", "RawSample", "RootError", "SourceAdapter", "get_adapter"]
