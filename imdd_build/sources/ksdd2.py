"""KolektorSDD2 (Božič, Tabernik, Skočaj, Computers in Industry 2021). CC BY-NC-SA 4.0.

Native layout:

    root/train/10000.png  10000_GT.png  10001.png  10001_GT.png ...
    root/test/20000.png   20000_GT.png ...

The root may also be one folder above (e.g. a `KolektorSDD2/` level); split folder names are
matched case-insensitively. Images are RGB PNG, about 230x630. Every image has a mask
`<id>_GT.png` (0/255): the mask is read here (small files) and the image is `defective` iff its
maximum is > 0 (then the mask is attached), else `normal` without a mask. The source has no label
spellings, so `source_labels` stays empty and the canonical type is `anomaly`. An image without a
`_GT` file, or with an unreadable one, is quarantined; a `_GT` file without an image is ignored.

Official split: the `train/` and `test/` folders (no validation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs
from ..sourcekit.search import search_below
from .ksdd import paired_masks

SPLITS = ("train", "test")


def _splits(folder: Path) -> list[Path]:
    return [d for d in sorted_dirs(folder) if d.name.lower() in SPLITS]


class KolektorSDD2Adapter(SourceAdapter):
    id = "ksdd2"
    expected = "{train,test}/<id>.png with <id>_GT.png"

    def locate(self) -> Path:
        found = search_below(self.root, _splits)
        if found is None:
            raise RootError(f"{self.root}: no train/ or test/ folder (is this the unpacked KolektorSDD2 folder?)")
        return found[0]

    def samples(self) -> Iterator[RawSample | Quarantined]:
        base = self.base
        for split in _splits(base):
            for pair in paired_masks(split, base, "_gt", "_GT.png", self.source_id):
                if isinstance(pair, Quarantined):
                    yield pair
                    continue
                rel, mask, defective = pair
                yield RawSample(
                    rel_path=rel, product="commutator", source_split=split.name,
                    label="defective" if defective else "normal",
                    mask_path=mask if defective else None,
                )
