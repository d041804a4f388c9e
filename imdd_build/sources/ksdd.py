"""KolektorSDD (Tabernik et al., J. Intelligent Manufacturing 2020). CC BY-NC-SA 4.0.

Native layout: one folder per physical commutator, eight surfaces each:

    root/KolektorSDD/kos01/Part0.jpg  Part0_label.bmp  Part1.jpg  Part1_label.bmp ... Part7.jpg
    ...
    root/KolektorSDD/kos50/...

The `--root` may be the folder holding the `kosNN` folders or any folder up to three levels above
it (the archive's `KolektorSDD/` level, a stray extra nesting such as `KolektorSDD/KolektorSDD/`):
the shallowest folder with `kosNN` sub-folders wins, and paths are relative to it, so keys do not
depend on where the user points. Deeper stray copies of the tree are ignored.

Images `PartN.jpg` (gray, 500 wide, about 1240-1270 high), extension matched case-insensitively.
Every image has a mask `PartN_label.bmp` (gray 0/255 with a few other non-zero values): a pixel is
defect when > 0. The label is read from the mask here (small files): all-zero mask -> `normal`
(stored without a mask), else `defective` with the mask. The source has no label spellings, so
`source_labels` stays empty and the canonical type is `anomaly`. An image without a mask file, or
with an unreadable one, is quarantined.

No official split (papers use 3-fold cross-validation by item): seeded split grouped by the `kosNN`
item, so the eight surfaces of one commutator never straddle splits.
Known oddity: the authors' loader skips `kos21/Part7`; it is kept here unless it is broken (then the
normal quarantine of bad files applies). The archive has 399 images (one of the 400 is missing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.search import search_below

ITEM = re.compile(r"^kos\d+$", re.IGNORECASE)


def mask_has_defect(path: Path) -> bool:
    """Any non-zero pixel in a mask image (any mode); OSError/ValueError when it cannot be read."""
    with Image.open(path) as im:
        im.load()
        return bool(np.asarray(im).max(initial=0) > 0)


def find_items_folder(root: Path, depth: int = 3) -> Path | None:
    """The shallowest folder (breadth first, name order) with `kosNN` sub-folders, or None."""
    found = search_below(root, lambda folder: any(ITEM.match(d.name) for d in sorted_dirs(folder)), depth)
    return found[0] if found else None


def paired_masks(folder: Path, base: Path, suffix: str, mask_name: str,
                 source_id: str) -> Iterator[tuple[str, str, bool] | Quarantined]:
    """Images of `folder` with their `<stem><suffix>` mask beside them (Kolektor style):
    (image rel path, mask rel path, defective iff the mask has a non-zero pixel), or Quarantined."""
    files = sorted_images(folder)
    masks = {p.stem.lower()[:-len(suffix)]: p for p in files if p.stem.lower().endswith(suffix)}
    for image in files:
        if image.stem.lower().endswith(suffix):
            continue
        rel = image.relative_to(base).as_posix()
        mask = masks.get(image.stem.lower())
        if mask is None:
            yield Quarantined(source=source_id, path=rel, reason=f"no mask {image.stem}{mask_name} next to the image")
            continue
        try:
            defective = mask_has_defect(mask)
        except (OSError, ValueError) as exc:
            yield Quarantined(source=source_id, path=rel,
                              reason=f"mask {mask.relative_to(base).as_posix()} is unreadable: {exc}")
            continue
        yield rel, mask.relative_to(base).as_posix(), defective


class KolektorSDDAdapter(SourceAdapter):
    id = "ksdd"
    expected = "kosNN/PartN.jpg with PartN_label.bmp"

    def locate(self) -> Path:
        base = find_items_folder(self.root)
        if base is None:
            raise RootError(f"{self.root}: no kosNN folders found (is this the unpacked KolektorSDD folder?)")
        return base

    def samples(self) -> Iterator[RawSample | Quarantined]:
        base = self.base
        for item in sorted_dirs(base):
            if not ITEM.match(item.name):
                continue
            for pair in paired_masks(item, base, "_label", "_label.bmp", self.source_id):
                if isinstance(pair, Quarantined):
                    yield pair
                    continue
                rel, mask, defective = pair
                yield RawSample(
                    rel_path=rel, product="commutator", source_split="",
                    label="defective" if defective else "normal",
                    mask_path=mask if defective else None,
                    split=self.seeded(item.name.lower()), split_origin="seeded",
                    attributes={"item": item.name},
                )
