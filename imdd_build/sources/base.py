"""The one small interface every source adapter implements, and file helpers they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..record import Quarantined

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_MAP = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
             "validation": "validation", "test": "test", "testing": "test", "test_public": "test"}


class RootError(Exception):
    """The root as a whole is unusable (wrong folder, missing split file): a run-level error."""


@dataclass
class RawSample:
    """What an adapter knows about one image before any decoding. Paths are root-relative, posix."""

    rel_path: str
    product: str
    source_split: str
    label: str  # "normal" | "defective"
    source_labels: list[str] = field(default_factory=list)
    mask_path: str | None = None
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)  # original pixels
    split: str | None = None  # our split; derived from source_split when None

    def our_split(self) -> str:
        if self.split:
            return self.split
        try:
            return SPLIT_MAP[self.source_split.lower()]
        except KeyError:
            raise ValueError(f"no split mapping for source split {self.source_split!r}") from None


class SourceAdapter:
    """Walk a source as unpacked from its official archive; yield RawSample or Quarantined."""

    id: ClassVar[str]

    def __init__(self, root: Path, **options):
        self.root = Path(root)
        self.base = self.root  # what sample paths are relative to; adapters may move it up
        self.options = options
        if not self.root.is_dir():
            raise RootError(f"{self.root}: not a directory")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        raise NotImplementedError

    def resolve(self, rel_path: str) -> Path:
        return self.base / rel_path


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def sorted_dirs(path: Path) -> list[Path]:
    """Subdirectories in name order, hidden ones (and macOS `__MACOSX`) skipped."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def sorted_images(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and is_image(p))


def resolve_ci(root: Path, rel: str) -> Path | None:
    """`root/rel` if it exists, else the same path matched case-insensitively (`.JPG` vs `.jpg`)."""
    direct = root / rel
    if direct.exists():
        return direct
    current = root
    for part in Path(rel).parts:
        if not current.is_dir():
            return None
        match = next((c for c in sorted(current.iterdir()) if c.name.lower() == part.lower()), None)
        if match is None:
            return None
        current = match
    return current
