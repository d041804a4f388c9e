"""The workspace folder: the catalog, the content store and generated data live here."""

from __future__ import annotations

import os
from pathlib import Path

from .catalog import Catalog
from .store import Store

DEFAULT_WORKSPACE = "./imdd-workspace"


class Workspace:
    """`<dir>/catalog.sqlite`, `<dir>/store/`; created on first use unless `create=False` (commands that
    only read or change what is already there must not leave an empty workspace behind)."""

    def __init__(self, root: str | Path | None = None, create: bool = True):
        self.root = Path(root or os.environ.get("IMDD_WORKSPACE") or DEFAULT_WORKSPACE)
        self.create = create

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def store_root(self) -> Path:
        return self.root / "store"

    def catalog(self) -> Catalog:
        if not self.create and not self.catalog_path.is_file():
            raise FileNotFoundError(f"no workspace at {self.root} (no catalog.sqlite there: run `imdd-build ingest` "
                                    "or `imdd-build demo` first, or pass --workspace)")
        self.root.mkdir(parents=True, exist_ok=True)
        return Catalog(self.catalog_path)

    def store(self) -> Store:
        return Store(self.store_root)
