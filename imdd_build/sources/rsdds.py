"""RSDDs rail surface defect datasets (Gan et al., IEEE Sensors Journal 17(23), 2017). License unstated.

Native layout: two sets, `Type-I RSDDs dataset/` (express rails) and `Type-II RSDDs dataset/`
(heavy-haul rails), each with `Rail surface images/<name>.jpg` and a pixel mask of the same name in
`GroundTruth/<name>.jpg`. Every image contains at least one defect.

Quirks handled:
* folder names contain spaces and vary in case and separators (`Type-I`, `Type_II`, `type ii`):
  the set is recognised by a `Type-I`/`Type-II` prefix and becomes the product (`Type-I`, `Type-II`);
  `--category Type-I` keeps one set;
* masks are JPEG-compressed: a pixel is defect above 127;
* the mask is the file of the same stem in `GroundTruth/` (any image extension, any case); an
  image without one is quarantined;
* the image folder is the sub-folder that is not `GroundTruth` (normally `Rail surface images`);
* the root may be the folder holding both sets or one set's folder; paths are relative to the
  folder holding the sets;
* no official split: a seeded split by set and image stem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.masks import MaskFiles
from ..sourcekit.options import CategoryOptions

_TYPE = re.compile(r"^type[\s_-]*(ii|i|2|1)(?![a-z])", re.I)
MASK_THRESHOLD = 127
DEFECT = "defect"


def set_name(folder: str) -> str | None:
    m = _TYPE.match(folder.strip())
    if not m:
        return None
    return "Type-II" if m.group(1).lower() in ("ii", "2") else "Type-I"


def _is_gt(path: Path) -> bool:
    return re.sub(r"[\s_-]", "", path.name.lower()) in ("groundtruth", "gt", "groundtruths", "mask", "masks")


class RSDDsAdapter(SourceAdapter):
    id = "rsdds"
    expected = "Type-I/Type-II RSDDs dataset/Rail surface images/*.jpg with GroundTruth/*.jpg"
    Options = CategoryOptions
    labels = (DEFECT,)

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once (`_sets` moves the base up or down)."""
        self.sets = self._sets()
        return self.base

    def _sets(self) -> list[tuple[str, Path]]:
        if set_name(self.root.name) and any(_is_gt(d) for d in sorted_dirs(self.root)):
            self.base = self.root.parent
            return [(set_name(self.root.name), self.root)]
        sets = [(set_name(d.name), d) for d in sorted_dirs(self.root) if set_name(d.name)]
        if not sets:
            nested = [d for d in sorted_dirs(self.root) if any(set_name(s.name) for s in sorted_dirs(d))]
            if len(nested) == 1:
                self.base = nested[0]
                sets = [(set_name(d.name), d) for d in sorted_dirs(nested[0]) if set_name(d.name)]
        if not sets:
            raise RootError(f"{self.root}: no 'Type-I RSDDs dataset' / 'Type-II RSDDs dataset' folders found")
        return sets

    def samples(self) -> Iterator[RawSample | Quarantined]:
        wanted = {c.lower() for c in self.options.get("categories") or []}
        for product, folder in self.sets:
            if wanted and product.lower() not in wanted:
                continue
            gt = next((d for d in sorted_dirs(folder) if _is_gt(d)), None)
            masks = {p.stem.lower(): p for p in sorted_images(gt)} if gt else {}
            for images in (d for d in sorted_dirs(folder) if not _is_gt(d)):
                for image in sorted_images(images):
                    rel = image.relative_to(self.base).as_posix()
                    mask = masks.get(image.stem.lower())
                    if mask is None:
                        where = gt.name if gt else "GroundTruth"
                        yield Quarantined(source=self.source_id, path=rel,
                                          reason=f"mask {image.stem}.* not found in {where}/")
                        continue
                    yield RawSample(
                        rel_path=rel, product=product, source_split="", label="defective",
                        source_labels=[DEFECT],
                        mask=MaskFiles([mask.relative_to(self.base).as_posix()], threshold=MASK_THRESHOLD),
                        split=self.seeded(f"{product}/{image.stem.lower()}"), split_origin="seeded",
                    )
