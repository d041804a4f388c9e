"""X-SDD, Xsteel surface defect dataset (Feng, Gao, Gao, Yang, Zhang, Symmetry 2021).

1,360 RGB 128x128 images of hot-rolled steel strip in seven class folders, classification only,
every image defective: finishing roll printing, iron sheet ash, oxide scale of plate system,
oxide scale of temperature system, red iron, slag inclusion, surface scratch.

Quirks handled:
* folder spellings vary between copies (blanks, underscores, hyphens, case: `Red_Iron`,
  `oxide scale of plate system`, `surface-scratch`): names are folded (lower case, every run of
  separators as one `_`) and matched to the seven classes; `source_labels` is the folded class
  name, the folder as found is kept in the `folder` attribute when it differs;
* the public GitHub copy is `X-SDD/datas/<class with blanks>/NNNN.{png,jpg}` (the extension differs
  between classes); `Red iron sheet` (a unified copy's spelling) is accepted for red iron;
* the class folders may sit in the root, in wrapping folders (`X-SDD/datas/`), or in split folders
  (`train/`, `test/`, ...): split folders, when present, give an official split; otherwise a seeded
  split per image (grouped by class and file stem);
* images in a folder that is no X-SDD class are quarantined (one entry per image);
* extensions are matched case-insensitively; hidden files and `__MACOSX` are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import SPLIT_MAP, RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import search_below

XSDD_CLASSES = ("finishing_roll_printing", "iron_sheet_ash", "oxide_scale_of_plate_system",
                "oxide_scale_of_temperature_system", "red_iron", "slag_inclusion", "surface_scratch")
PRODUCT = "steel_strip"
_SEP = re.compile(r"[^a-z0-9]+")


_ALIASES = {"red_iron_sheet": "red_iron", "finishing_roll_print": "finishing_roll_printing",
            "surface_scratches": "surface_scratch"}


def xsdd_class(name: str) -> str | None:
    folded = _SEP.sub("_", name.strip().lower()).strip("_")
    folded = _ALIASES.get(folded, folded)
    return folded if folded in XSDD_CLASSES else None


def _has_classes(folder: Path) -> bool:
    return any(xsdd_class(d.name) for d in sorted_dirs(folder))


def find_xsdd(root: Path) -> tuple[Path, list[tuple[str, Path]]]:
    """(base, [(split name or "", folder holding the class folders)])."""
    def units(folder: Path) -> list[tuple[str, Path]]:
        splits = [(d.name, d) for d in sorted_dirs(folder) if d.name.lower() in SPLIT_MAP and _has_classes(d)]
        return splits or ([("", folder)] if _has_classes(folder) else [])

    found = search_below(root, units, 2)
    if found:
        return found
    raise RootError(f"{root}: no X-SDD class folders found (expected e.g. red_iron/, slag_inclusion/)")


class XsddAdapter(SourceAdapter):
    id = "xsdd"
    expected = "the seven X-SDD class folders of images (finishing_roll_printing ... surface_scratch)"
    Options = CategoryOptions
    labels = XSDD_CLASSES

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        base, self.units = find_xsdd(self.root)
        return base

    def samples(self) -> Iterator[RawSample | Quarantined]:
        units = self.units
        wanted = {xsdd_class(c) or c for c in self.options.get("categories") or []}
        for split, folder in units:
            for class_dir in sorted_dirs(folder):
                cls = xsdd_class(class_dir.name)
                if split == "" and class_dir.name.lower() in SPLIT_MAP:
                    continue
                if cls is None:
                    for image in sorted_images(class_dir):
                        yield Quarantined(source=self.source_id, path=image.relative_to(self.base).as_posix(),
                                          reason=f"folder {class_dir.name!r} is no X-SDD class")
                    continue
                if wanted and cls not in wanted:
                    continue
                attributes = {"folder": class_dir.name} if class_dir.name != cls else {}
                for image in sorted_images(class_dir):
                    rel = image.relative_to(self.base).as_posix()
                    common = dict(rel_path=rel, product=PRODUCT, label="defective", source_labels=[cls],
                                  attributes=dict(attributes))
                    if split:
                        yield RawSample(source_split=split, **common)
                    else:
                        yield RawSample(source_split="", split=self.seeded(f"{cls}/{image.stem.lower()}"),
                                        split_origin="seeded", **common)
