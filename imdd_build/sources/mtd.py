"""Magnetic Tile Defect (Huang, Qiu, Yuan, The Visual Computer 2020). License unstated (research).

Native layout: one folder per class, `MT_Blowhole`, `MT_Break`, `MT_Crack`, `MT_Fray`, `MT_Uneven` and
`MT_Free` (defect-free), each with an `Imgs/` folder where the image `<stem>.jpg` and its mask
`<stem>.png` sit side by side, differing only by extension.

Quirks handled:
* the image is the non-PNG file of a stem (`.jpg`, any case); a `.png` is never taken as an image,
  it is the mask of the image with the same stem (matched case-insensitively);
* the masks are not clean 0/255: their edges carry interpolated gray values, so a pixel is defect
  above 127;
* `MT_Free` images are normal; their masks are all zero and are not attached;
* a defect image without its mask is quarantined;
* the root may be the folder holding the `MT_*` folders or its parent (e.g. a repository checkout
  with `Magnetic-Tile-Defect/MT_*`); a folder missing `Imgs/` is read directly;
* no official split: a seeded split by file stem (the physical tile is not known).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs
from ..sourcekit.masks import MaskFiles
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import shallowest

NORMAL_CLASS = "MT_Free"
CLASSES = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven", NORMAL_CLASS)
MASK_THRESHOLD = 127


def _class_dirs(path: Path) -> list[Path]:
    return [d for d in sorted_dirs(path) if d.name.lower().startswith("mt_")]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


class MTDAdapter(SourceAdapter):
    id = "mtd"
    expected = "MT_<class>/Imgs/<stem>.jpg with <stem>.png masks"
    Options = CategoryOptions
    labels = CLASSES

    def locate(self) -> Path:
        if _class_dirs(self.root):
            return self.root
        if self.root.name.lower().startswith("mt_") and self.root.is_dir():
            return self.root.parent
        nested = shallowest(self.root, _class_dirs)
        if len(nested) == 1:
            return nested[0][0]
        raise RootError(f"{self.root}: no MT_* class folders (MT_Blowhole, ..., MT_Free) found")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        classes = _class_dirs(self.base)
        if self.root.name.lower().startswith("mt_") and self.root.parent == self.base:
            classes = [self.root]
        wanted = set(self.options.get("categories") or [])
        if wanted:
            classes = [c for c in classes if c.name in wanted]
        for cls in classes:
            folder = next((d for d in sorted_dirs(cls) if d.name.lower() == "imgs"), cls)
            normal = cls.name.lower() == NORMAL_CLASS.lower()
            masks = {p.stem.lower(): p for p in _files(folder) if p.suffix.lower() == ".png"}
            for image in _files(folder):
                if image.suffix.lower() not in (".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
                    continue  # .png files are masks, anything else is not an image
                rel = image.relative_to(self.base).as_posix()
                mask = masks.get(image.stem.lower())
                if not normal and mask is None:
                    yield Quarantined(source=self.source_id, path=rel,
                                      reason=f"mask {image.stem}.png not found next to the image")
                    continue
                yield RawSample(
                    rel_path=rel, product="magnetic_tile", source_split="",
                    label="normal" if normal else "defective", source_labels=[cls.name],
                    mask=None if normal else MaskFiles([mask.relative_to(self.base).as_posix()],
                                                       threshold=MASK_THRESHOLD),
                    split=self.seeded(image.stem), split_origin="seeded",
                )
