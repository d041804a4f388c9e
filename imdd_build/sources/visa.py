"""VisA (Zou et al., "SPot-the-Difference ...", ECCV 2022). License per sources.yaml.

Two layouts, detected from the root:
* raw archive: `split_csv/1cls.csv` (object,split,label,image,mask; root-relative paths) decides the
  split, images `<object>/Data/Images/{Normal,Anomaly}/*.JPG`, class-index masks
  `<object>/Data/Masks/Anomaly/*.png` (any non-zero is defect; the value names the defect class by
  the repo's per-object `id2class` table, which gives `class_mask`), free-text defect names in
  `<object>/image_anno.csv` when present;
* the converted "VisA_pytorch" copy: an MVTec-like tree with `good`/`bad`, masks in `ground_truth/bad`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, resolve_ci
from ..sourcekit.masks import ClassIndexMask
from ..sourcekit.mvtec_tree import MVTecTreeAdapter, find_tree
from ..sourcekit.options import CategoryOptions

SPLIT_CSV = "split_csv/1cls.csv"

# The spot-diff repo's per-object id2class tables: mask value -> defect class (0 is background).
ID2CLASS: dict[str, list[str]] = {
    "pcb1": ["Bent", "Melt", "Scratch", "Missing"],
    "pcb2": ["Bent", "Melt", "Scratch", "Missing"],
    "pcb3": ["Bent", "Melt", "Scratch", "Missing"],
    "pcb4": ["Burnt", "Scratch", "Missing", "Damage", "Extra", "Wrong Place", "Dirt"],
    "capsules": ["Bubble", "Discolor", "Scratch", "Leak", "Misshape"],
    "candle": ["Chunk Of Wax Missing", "Damaged Corner of Packaging", "weird candle wick", "Different Colour Spot",
               "Extra Wax in Candle", "Foreign Particals on Candle", "Wax Melded out of the candle", "Other"],
    "cashew": ["Burnt", "Corner or Edge Breakage", "Different Colour Spot", "Middle Breakage", "Small Holes",
               "Small Scratches", "Stuck Together", "Same Colour Spot", "Other"],
    "chewinggum": ["Chunk of gum missing", "Corner Missing", "Scratches", "Similar Colour Spot", "Small Cracks",
                   "Other"],
    "fryum": ["Burnt", "Corner or Edge Breakage", "Different Colour Spot", "Fryum Stuck Together",
              "Middle Breakage", "Similar Colour Spot", "Small Scratches", "Other"],
    "macaroni1": ["Chip Around Edge And Corner", "Different Colour Spot", "Middle Breakage", "Similar Colour Spot",
                  "Small Cracks", "Small Scratches", "Other"],
    "macaroni2": ["Breakage down the middle", "Color spot similar to the Object", "Different Color spot",
                  "Small chip around edge", "Small Cracks", "Small Scratches", "Other"],
    "pipe_fryum": ["Burnt", "Corner And Edge Breakage", "Different Colour Spot", "Middle Breakage",
                   "Similar Colour Spot", "Small Scratches", "Stuck Together", "Small Cracks", "Other"],
}


def visa_class_mask(obj: str, mask_rel: str, defects: list[str]) -> ClassIndexMask:
    """The class-index mask of one anomalous image; a value outside the object's table takes the
    image's own defect name when it has exactly one."""
    names = dict(enumerate(ID2CLASS.get(obj, []), start=1))
    return ClassIndexMask(mask_rel, names, fallback=defects[0] if len(defects) == 1 else None)
_NORMAL = {"normal", "good", "ok"}


def _path_tail(path: str, parts: int = 3) -> str:
    return "/".join(path.replace("\\", "/").lower().split("/")[-parts:])


def read_image_anno(path: Path) -> dict[str, list[str]]:
    """`image_anno.csv` -> {last three path parts: defect names}; tolerant of column-name case."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "image" not in cols or "label" not in cols:
            return {}
        out = {}
        for row in reader:
            names = [n.strip() for n in (row[cols["label"]] or "").split(",") if n.strip()]
            out[_path_tail(row[cols["image"]])] = list(dict.fromkeys(names))
        return out


class VisAAdapter(MVTecTreeAdapter):
    id = "visa"
    expected = "split_csv/1cls.csv with <object>/Data/Images/{Normal,Anomaly}/*.JPG (or the VisA_pytorch tree)"
    Options = CategoryOptions
    half_max = False  # the VisA_pytorch copy: MVTec AD's 0/255 masks
    flag_missing = False

    def locate(self) -> Path:
        """The raw layout (split csv at the root), else the VisA_pytorch tree (an MVTec-style tree)."""
        self._layout = "raw" if (self.root / SPLIT_CSV).is_file() else "pytorch"
        if self._layout == "raw":
            return self.root
        try:
            find_tree(self.root)
        except RootError:
            raise RootError(f"{self.root}: neither the raw VisA layout ({SPLIT_CSV}) nor a VisA_pytorch "
                            "tree (<object>/train/good) was found") from None
        return super().locate()

    def layout(self) -> str:
        """"raw" (the official archive) or "pytorch" (the VisA_pytorch MVTec-style copy)."""
        return self._layout

    def samples(self) -> Iterator[RawSample | Quarantined]:
        if self._layout == "pytorch":
            yield from super().samples()
            return
        yield from self._raw_samples()

    def _raw_samples(self) -> Iterator[RawSample | Quarantined]:
        wanted = set(self.options.get("categories") or [])
        annos: dict[str, dict[str, list[str]]] = {}
        with (self.root / SPLIT_CSV).open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            required = {"object", "split", "label", "image"}
            if not required <= set(reader.fieldnames or []):
                raise RootError(f"{self.root / SPLIT_CSV}: expected columns {sorted(required)}, "
                                f"found {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                obj = row["object"].strip()
                if wanted and obj not in wanted:
                    continue
                image = resolve_ci(self.root, row["image"].strip())
                if image is None:
                    yield Quarantined(source=self.id, path=row["image"].strip(),
                                      reason=f"listed in {SPLIT_CSV} line {line} but not found")
                    continue
                normal = row["label"].strip().lower() in _NORMAL
                mask = None
                if not normal and (row.get("mask") or "").strip():
                    found = resolve_ci(self.root, row["mask"].strip())
                    if found is None:
                        yield Quarantined(source=self.id, path=row["mask"].strip(),
                                          reason=f"mask listed in {SPLIT_CSV} line {line} but not found")
                        continue
                    mask = found.relative_to(self.root).as_posix()
                if obj not in annos:
                    annos[obj] = read_image_anno(self.root / obj / "image_anno.csv")
                defects = [] if normal else annos[obj].get(_path_tail(row["image"])) or [row["label"].strip()]
                yield RawSample(
                    rel_path=image.relative_to(self.root).as_posix(), product=obj,
                    source_split=row["split"].strip(), label="normal" if normal else "defective",
                    source_labels=defects if not normal else [row["label"].strip()],
                    mask=visa_class_mask(obj, mask, defects) if mask else None,
                )
