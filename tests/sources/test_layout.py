"""`imdd_build/sources/` lists exactly one module per source; shared code lives in `sourcekit`."""

import importlib
import pkgutil

import imdd_build.sources as sources
from imdd_build.sourcekit.base import SourceAdapter


def test_every_sources_module_defines_exactly_one_adapter():
    for info in pkgutil.iter_modules(sources.__path__):
        module = importlib.import_module(f"imdd_build.sources.{info.name}")
        own = [obj for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, SourceAdapter) and getattr(obj, "id", None)
               and obj.__module__ == module.__name__]
        assert len(own) == 1, f"{info.name}: {[a.__name__ for a in own]}"
        assert own[0].id in sources.ADAPTERS
    assert len(sources.ADAPTERS) == len(list(pkgutil.iter_modules(sources.__path__)))
