"""AITEX Fabric Image Database (Silvestre-Blanes et al., Autex Research Journal 2019).

Native layout (the three folders of the archive; the root may also be one folder above them):

    root/Defect_images/0001_002_00.png ...          105 defective images, 4096x256 gray
    root/Mask_images/0001_002_00_mask.png ...       white = defect
    root/NODefect_images/<fabric folder>/nnnn_000_ff.png   140 defect-free images

Folder names are matched case-insensitively. File names are `nnnn_ddd_ff`: image number, defect
code, fabric code (00-06, the product: `fabric_ff`). Defect-free images carry code `000` (their
source label) and are found in any sub-folder of `NODefect_images/` (or directly in it).

Masks are paired by name, tolerantly: `<stem>_mask.png`, several files `<stem>_mask1.png`,
`<stem>_mask2.png` (OR-ed into one mask), case, and a space or hyphen before `mask` are all
accepted; any image extension. A defective image with no mask file is kept as defective without a
mask (attribute `mask_missing`); a mask whose stem matches no image is reported in quarantine.
A file in `Defect_images/` whose name does not follow `nnnn_ddd_ff` is quarantined.

The defect code is the source label (`"002"`); its published name is kept in attributes
(`defect_name`) together with the codes; taxonomy.yaml maps the codes onto canonical types.
Codes 012 and 018 appear in some descriptions of the dataset without a name (unverified): they map
to `anomaly`. No official split: seeded split, one group per image number (`nnnn`).
Images are 16:1 strips: with the default letterbox they fill a 512x32 band of the canvas.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.masks import MaskFiles
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import search_below

NAME = re.compile(r"^(\d+)_(\d+)_(\d+)$")
MASK = re.compile(r"^(\d+_\d+_\d+)[\s_-]*mask(\d*)$", re.IGNORECASE)

DEFECT_NAMES = {
    "000": "No defect", "002": "Broken end", "006": "Broken yarn", "010": "Broken pick",
    "016": "Weft curling", "019": "Fuzzyball", "022": "Cut selvage", "023": "Crease", "025": "Warp ball",
    "027": "Knots", "029": "Contamination", "030": "Nep", "036": "Weft crack",
}
CODES = (*DEFECT_NAMES, "012", "018")


def _child_ci(folder: Path, name: str) -> Path | None:
    return next((d for d in sorted_dirs(folder) if d.name.lower() == name.lower()), None)


def _images_below(folder: Path) -> list[Path]:
    """Images in `folder` and all its visible sub-folders, in path order."""
    out = list(sorted_images(folder))
    for sub in sorted_dirs(folder):
        out.extend(_images_below(sub))
    return sorted(out)


class AITEXAdapter(SourceAdapter):
    id = "aitex"
    expected = "Defect_images/*.png with Mask_images/*_mask.png, and NODefect_images/<fabric>/*.png"
    Options = CategoryOptions
    labels = CODES

    def locate(self) -> Path:
        found = search_below(self.root, lambda f: _child_ci(f, "Defect_images") or _child_ci(f, "NODefect_images"))
        if found is None:
            raise RootError(f"{self.root}: no Defect_images/ or NODefect_images/ folder (is this the unpacked "
                            "AITEX archive?)")
        return found[0]

    def samples(self) -> Iterator[RawSample | Quarantined]:
        base = self.base
        wanted = {c.lower() for c in self.options.get("categories") or []}
        defect_dir = _child_ci(base, "Defect_images")
        mask_dir = _child_ci(base, "Mask_images")
        normal_dir = _child_ci(base, "NODefect_images")

        masks: dict[str, list[Path]] = {}
        orphans: list[Path] = []
        for mask in _images_below(mask_dir) if mask_dir else []:
            m = MASK.match(mask.stem.strip())
            if m:
                masks.setdefault(m.group(1), []).append(mask)
            else:
                orphans.append(mask)
        used: set[str] = set()

        for folder, defective in ((normal_dir, False), (defect_dir, True)):
            for image in _images_below(folder) if folder else []:
                rel = image.relative_to(base).as_posix()
                m = NAME.match(image.stem.strip())
                if not m:
                    yield Quarantined(source=self.source_id, path=rel,
                                      reason="file name does not follow nnnn_ddd_ff (number, defect code, fabric)")
                    continue
                number, code, fabric = m.groups()
                product = f"fabric_{fabric}"
                if defective:
                    used.add(image.stem.strip())
                if wanted and product not in wanted:
                    continue
                attributes = {"image_number": number, "defect_code": code, "fabric_code": fabric}
                if code in DEFECT_NAMES:
                    attributes["defect_name"] = DEFECT_NAMES[code]
                mask_files = []
                if defective:
                    mask_files = [p.relative_to(base).as_posix() for p in masks.get(image.stem.strip(), [])]
                    if not mask_files:
                        attributes["mask_missing"] = True
                elif code != "000":
                    attributes["folder_says_normal"] = True
                yield RawSample(
                    rel_path=rel, product=product, source_split="", label="defective" if defective else "normal",
                    source_labels=[code], mask=MaskFiles(sorted(mask_files)) if mask_files else None,
                    split=self.seeded(number), split_origin="seeded", attributes=attributes,
                )
        for key in sorted(set(masks) - used):
            for mask in masks[key]:
                orphans.append(mask)
        for mask in sorted(orphans):
            yield Quarantined(source=self.source_id, path=mask.relative_to(base).as_posix(),
                              reason="mask file matches no image in Defect_images/")
