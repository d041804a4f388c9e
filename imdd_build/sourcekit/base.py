"""The one small interface every source adapter implements, and file helpers they share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..record import Quarantined
from .masks import MaskFiles, MaskSource
from .options import AdapterOptions, validate_options

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_MAP = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
             "validation": "validation", "test": "test", "testing": "test", "test_public": "test"}


class RootError(Exception):
    """The root as a whole is unusable (wrong folder, missing split file): a run-level error."""


DEFAULT_SEEDED_SPLIT = {"train": 0.7, "validation": 0.1, "test": 0.2}


def seeded_split(source_id: str, group: str, fractions: dict[str, float] | None = None,
                 seed: str = "imdd-v1") -> str:
    """A deterministic split for sources without an official one.

    `group` is what must not straddle splits (a physical item, a board, a lot); the split is a pure
    function of (seed, source, group), so it never changes when files are added or removed.
    """
    fractions = fractions or DEFAULT_SEEDED_SPLIT
    digest = hashlib.sha256(f"{seed}\0{source_id}\0{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    acc = 0.0
    total = sum(fractions.values())
    for name, frac in fractions.items():
        acc += frac / total
        if u < acc:
            return name
    return list(fractions)[-1]


@dataclass
class RawSample:
    """What an adapter knows about one image before any decoding. Paths are root-relative, posix.

    The image is the file `rel_path`, unless `pixels` carries it as an array (then `rel_path` is a
    virtual, unique path such as `LSWMD.pkl/000123` used for the key and provenance). The mask is
    the file `mask_path`, or any `MaskSource` in `mask` (several files, RLE, polygons, an array).
    Boxes are (label, x0, y0, x1, y1) in original pixels, x1/y1 exclusive.
    """

    rel_path: str
    product: str
    source_split: str
    label: str  # "normal" | "defective"
    source_labels: list[str] = field(default_factory=list)
    mask_path: str | None = None
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)  # original pixels
    split: str | None = None  # our split; derived from source_split when None
    split_origin: str = "official"  # "official" | "seeded" (see seeded_split); dedupe may regroup seeded
    mask: MaskSource | None = None
    pixels: np.ndarray | None = None
    nearest: bool = False  # resize the pixels without interpolation (rendered label maps)
    attributes: dict[str, Any] = field(default_factory=dict)  # source facts kept on the record (JSON-safe)

    def __post_init__(self) -> None:
        if self.mask is None and self.mask_path:
            self.mask = MaskFiles([self.mask_path])

    def our_split(self) -> str:
        if self.split:
            return self.split
        try:
            return SPLIT_MAP[self.source_split.lower()]
        except KeyError:
            raise ValueError(f"no split mapping for source split {self.source_split!r}") from None

    def facts(self) -> dict:
        """What the record depends on besides file bytes: JSON-safe, used in the fingerprint."""
        return {"rel_path": self.rel_path, "product": self.product, "source_split": self.source_split,
                "label": self.label, "source_labels": list(self.source_labels),
                "boxes": [list(b) for b in self.boxes], "split": self.our_split(),
                "split_origin": self.split_origin, "nearest": self.nearest, "attributes": self.attributes,
                "mask_kind": type(self.mask).__name__ if self.mask else None}


class SourceAdapter:
    """Walk a source as unpacked from its official archive; yield RawSample or Quarantined."""

    id: ClassVar[str]
    #: Label constants the adapter's own code emits (a class-id table, a fixed "crack"), checked by
    #: `taxonomy check`. Spellings taken from the data (folder names, csv values) are listed only in
    #: taxonomy.yaml's table for the source, never here.
    labels: ClassVar[tuple[str, ...]] = ()
    #: Does the root have to be a directory (False for adapters that take a single file)?
    root_is_dir: ClassVar[bool] = True
    #: What a root must hold to yield samples, in a few words (the run-level error when it yields none).
    expected: ClassVar[str] = "images in the layout of the adapter's docstring"
    #: The options it reads (`--opt`, `--category`, a roots file's `options:`); unknown keys are refused.
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions

    def __init__(self, root: Path, entry=None, **options):
        self.root = Path(root)
        self.base = self.root  # what sample paths are relative to; adapters may move it up
        self.entry = entry  # the SourceEntry (sources.yaml or built from CLI options), may be None
        try:  # validated before anything touches the root: a typo is the first thing reported
            self.options = validate_options(getattr(self, "id", type(self).__name__), self.Options, options)
        except ValueError as exc:
            raise RootError(str(exc)) from None
        if self.root_is_dir and not self.root.is_dir():
            raise RootError(f"{self.root}: not a directory")
        if not self.root_is_dir and not self.root.exists():
            raise RootError(f"{self.root}: not found")
        self.base = self.locate()

    def locate(self) -> Path:
        """The folder sample paths are relative to (the dataset root inside what the user gave).

        Called once at construction, so a wrong root is a RootError before anything runs."""
        return self.root

    @property
    def source_id(self) -> str:
        return self.entry.id if self.entry is not None else self.id

    def seeded(self, group: str) -> str:
        """Our split for a sample of `group` in a source with no official split."""
        fractions = getattr(self.entry, "seeded_split", None) or None
        return seeded_split(self.source_id, group, fractions)

    def count_hint(self) -> int | None:
        """How many samples `samples()` will yield, when cheap to know (progress bar total)."""
        return None

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
