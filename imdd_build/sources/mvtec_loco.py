"""MVTec LOCO AD (Bergmann et al., "Beyond Dents and Scratches", IJCV 2022). License: sources.yaml.

Native layout (the archive folder `mvtec_loco_anomaly_detection/` may be the root or wrap it):

    breakfast_box/train/good/000.png
    breakfast_box/validation/good/000.png
    breakfast_box/test/{good,logical_anomalies,structural_anomalies}/000.png
    breakfast_box/ground_truth/<kind>/000/000.png [001.png ...]   a FOLDER per anomalous image
    breakfast_box/defects_config.json                               optional here
    (juice_bottle, pushpins, screw_bag, splicing_connectors alike)

Quirks handled:
* each anomalous image has a folder of mask PNGs, one per annotated region; the regions carry the
  gray value of their defect type (not 255), so the mask is the union of every file's non-zero
  pixels (`MaskFiles`, threshold 0). A single `<stem>.png` / `<stem>_mask.png` file is accepted too;
* `validation` is an official split (good images only) and maps to our validation split;
* source labels are the folder names (`good`, `logical_anomalies`, `structural_anomalies`);
* when `defects_config.json` (a list of {defect_name, pixel_value, saturation_threshold,
  relative_saturation}) is present, the adapter reads the gray values present in the image's mask
  files (small single-channel PNGs) and names the defect sub-types in
  `attributes.defects` (with their pixel values in `attributes.pixel_values`); without the file,
  or with `--opt subtypes=false`, records only carry the logical/structural kind;
* an anomalous image without its mask folder keeps `attributes.mask = "missing"`.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..sourcekit.mvtec_tree import GROUND_TRUTH_DIRS, MVTecTreeAdapter
from ..sourcekit.base import is_image, sorted_images
from ..sourcekit.masks import MaskFiles, MaskSource
from ..sourcekit.options import CategoryOptions, Field

CONFIG = "defects_config.json"


def read_defects_config(path: Path) -> dict[int, str]:
    """pixel value -> defect name; {} when the file is absent or unreadable."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict):  # tolerate {"defects": [...]} and {name: value}
        data = data.get("defects", data)
        if isinstance(data, dict):
            data = [{"defect_name": k, "pixel_value": v} for k, v in data.items() if isinstance(v, int)]
    out: dict[int, str] = {}
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and "pixel_value" in item and item.get("defect_name"):
            try:
                out[int(item["pixel_value"])] = str(item["defect_name"])
            except (TypeError, ValueError):
                continue
    return out


def gray_values(path: Path) -> set[int]:
    """The non-zero gray values of one small mask file ({} if it cannot be read)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "1"):
                im = im.convert("L")
            colors = im.getcolors(maxcolors=1 << 16) or []
    except (OSError, ValueError):
        return set()
    return {int(v) for _, v in colors if isinstance(v, int) and v}


class MVTecLOCOAdapter(MVTecTreeAdapter):
    id = "mvtec_loco"
    expected = "<category>/{train,validation,test}/<class>/NNN.png with ground_truth/<class>/NNN/ mask folders"

    class Options(CategoryOptions):
        subtypes: bool = Field(True, description="Keep the logical/structural subtype in the defect label.")

    def __init__(self, root: Path, entry=None, **options):
        super().__init__(root, entry, **options)
        self._configs: dict[Path, dict[int, str]] = {}
        self.subtypes = str(self.options.get("subtypes", True)).lower() not in ("false", "0", "no", "off")

    def class_masks(self, category: Path, class_dir: Path) -> dict[str, Path]:
        """Mask folders (or single files) of one anomaly kind, by lower-cased image stem."""
        index: dict[str, Path] = {}
        for gt in GROUND_TRUTH_DIRS:
            folder = category / gt / class_dir.name
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                if entry.name.startswith((".", "__")):
                    continue
                if entry.is_dir():
                    index.setdefault(entry.name.lower(), entry)
                elif entry.is_file() and is_image(entry):
                    stem = entry.stem.lower()
                    index.setdefault(stem[:-5] if stem.endswith("_mask") else stem, entry)
        return index

    def _files(self, found: Path) -> list[Path]:
        return sorted_images(found) if found.is_dir() else [found]

    def mask_for(self, category, class_dir, image, masks) -> MaskSource | None:
        found = masks.get(image.stem.lower())
        files = self._files(found) if found else []
        if not files:
            return None
        rels = [self.rel(f) for f in files]
        config = self._config(category) if self.subtypes else {}
        # One file per annotated region, its gray value naming the sub-type: the class of each file.
        labels = [config.get(v, f"pixel_value_{v}") for v in (max(gray_values(f), default=0) for f in files)] \
            if config else None
        return MaskFiles(rels, threshold=0, labels=labels)

    def _config(self, category: Path) -> dict[int, str]:
        if category not in self._configs:
            self._configs[category] = read_defects_config(category / CONFIG) or \
                read_defects_config(self.base / CONFIG)
        return self._configs[category]

    def extra(self, category, class_dir, image, mask) -> dict:
        if mask is None:
            return {"mask": "missing"}
        if not self.subtypes:
            return {}
        config = self._config(category)
        if not config:
            return {}
        values = sorted(set().union(*(gray_values(self.base / p) for p in mask.paths)))
        return {"defects": list(dict.fromkeys(config.get(v, f"pixel_value_{v}") for v in values)),
                "pixel_values": values}
