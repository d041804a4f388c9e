"""Eyecandies, 2D part (Bonfiglioli et al., ACCV 2022): synthetic candies. License: sources.yaml.

Native layout: one archive per class, unpacked into a folder named after the class without spaces
(`CandyCane/`, `ChocolateCookie/`, ...; snake_case names are accepted too), each a set of Pipelime
"underfolders":

    CandyCane/train/data/000_image_0.png ... 000_image_5.png     (6 lighting conditions)
    CandyCane/train/data/000_depth.png (16-bit), 000_normals.png, 000_pose.txt, 000_info_depth.yaml
    CandyCane/train/data/000_metadata.yaml                       `anomalous: 0|1`
    CandyCane/val/data/...                                       good only
    CandyCane/test_public/data/000_mask.png                      union mask (8-bit)
    CandyCane/test_public/data/000_{bumps,dents,colors,normals}_mask.png   typed masks
    CandyCane/test_private/...                                   no ground truth: skipped

Quirks handled:
* only one lighting per sample is ingested: `image_5` (global light) by default,
  `--opt image=0` (or `image=image_0`) for the all-lights image; depth/normal maps are never images;
* `val` -> validation, `test_public` -> test; `test_private` (no labels) is skipped;
* the sample id zero-padding is not assumed: files are grouped by the digits before the first `_`;
* the label comes from metadata.yaml, tolerant of the key (`anomalous`, `is_anomalous`, `anomaly`,
  `label`, `defective`) and of the value (0/1, booleans, good/bad words); train and val samples
  without metadata are normal; a test sample whose label cannot be read is quarantined;
* defect types come from which typed masks are non-empty (`bumps`, `dents`, `colors`, `normals`
  as source labels; the small 8-bit masks are read for that); `anomalous` when none is usable;
* the mask is `<id>_mask.png`, else the union of the typed masks;
* products are snake_case class names (`candy_cane`); the root may be one class folder, the
  folder of all classes, or a folder wrapping it; a class folder holding a nested copy of itself
  is followed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ..record import Quarantined
from ..sourcekit.mvtec_tree import HalfMaxMask, find_tree, snake_case
from ..sourcekit.base import RawSample, RootError, SourceAdapter, is_image, sorted_dirs
from ..sourcekit.masks import MaskFiles, stack_classes
from ..sourcekit.options import CategoryOptions, Field

SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test_public": "test"}
SKIPPED = {"test_private", "test_private_mixed"}
TYPED = ("bumps", "dents", "colors", "normals")
LABEL_KEYS = ("anomalous", "is_anomalous", "anomaly", "label", "defective", "is_defective")
_ITEM = re.compile(r"^(\d+)_(.+)$")
_TRUE = {"1", "true", "yes", "anomalous", "anomaly", "bad", "defective", "ng", "ko"}
_FALSE = {"0", "false", "no", "good", "normal", "ok", "none"}


def _is_class_dir(path: Path) -> bool:
    return any(d.name.lower() in SPLITS or d.name.lower() in SKIPPED for d in sorted_dirs(path))


def read_anomalous(path: Path | None) -> bool | None:
    """The image-level flag from metadata.yaml; None when absent or unreadable."""
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    keys = {str(k).strip().lower(): v for k, v in data.items()}
    for key in LABEL_KEYS:
        if key in keys:
            value = str(keys[key]).strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
    return None


def non_empty(path: Path) -> bool:
    """Does this small mask file have any non-zero pixel? False when unreadable."""
    try:
        with Image.open(path) as im:
            return im.convert("L").getbbox() is not None
    except (OSError, ValueError):
        return False


class EyecandiesAdapter(SourceAdapter):
    id = "eyecandies"
    expected = "<Class>/{train,val,test_public}/data/NNN_image_0.png with NNN_metadata.yaml"

    class Options(CategoryOptions):
        image: str = Field("5", description="Which lighting: 0..5 (image_0 is all lights).")

    labels = ("good", *TYPED, "anomalous")

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        choice = str(self.options.get("image", "5")).strip().lower().removeprefix("image_")
        if choice not in {str(i) for i in range(6)}:
            raise RootError(f"{self.root}: option image must be 0..5 (image_0 .. image_5), not {choice!r}")
        self.image_item = f"image_{choice}"
        base, self.categories = find_tree(self.root, self.options.get("categories"), _is_class_dir, snake_case)
        return base

    def samples(self) -> Iterator[RawSample | Quarantined]:
        for category in self.categories:
            product = snake_case(category.name)
            for split_dir in sorted_dirs(category):
                split = SPLITS.get(split_dir.name.lower())
                if split is None:
                    continue  # test_private and anything unknown
                data = split_dir / "data" if (split_dir / "data").is_dir() else split_dir
                yield from self._split(data, split_dir.name, split, product)

    def _split(self, data: Path, source_split: str, split: str, product: str) -> Iterator[RawSample | Quarantined]:
        items: dict[str, dict[str, Path]] = defaultdict(dict)
        for f in sorted(data.iterdir()):
            m = _ITEM.match(f.stem)
            if f.is_file() and m and not f.name.startswith("."):
                items[m.group(1)][m.group(2).lower()] = f
        for sid in sorted(items, key=lambda s: (int(s), s)):
            files = items[sid]
            image = files.get(self.image_item)
            if image is None or not is_image(image):
                yield Quarantined(source=self.id, path=f"{(data / sid).relative_to(self.base).as_posix()}_{self.image_item}.png",
                                  reason=f"sample {sid} has no {self.image_item} file")
                continue
            anomalous = read_anomalous(files.get("metadata"))
            if anomalous is None:
                if split == "test":
                    yield Quarantined(source=self.id, path=self.rel(image),
                                      reason="no readable anomalous flag in metadata.yaml")
                    continue
                anomalous = False
            yield self._sample(image, files, sid, source_split, product, anomalous)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix()

    def _sample(self, image: Path, files: dict[str, Path], sid: str, source_split: str, product: str,
                anomalous: bool) -> RawSample:
        attributes: dict = {"sample_id": sid, "lighting": self.image_item}
        if not anomalous:
            return RawSample(rel_path=self.rel(image), product=product, source_split=source_split,
                             label="normal", source_labels=["good"], attributes=attributes)
        typed = {t: files[f"{t}_mask"] for t in TYPED if f"{t}_mask" in files}
        kinds = [t for t, p in typed.items() if non_empty(p)]
        union = files.get("mask")
        paths = [union] if union is not None else [typed[t] for t in kinds]
        if not paths:
            attributes["mask"] = "missing"
        mask = None
        if paths:
            mask = HalfMaxMask([self.rel(p) for p in paths])
            if kinds:
                mask = TypedMask(mask.paths, half_max=True, typed=[self.rel(typed[t]) for t in kinds], kinds=kinds)
        return RawSample(rel_path=self.rel(image), product=product, source_split=source_split,
                         label="defective", source_labels=kinds or ["anomalous"], mask=mask, attributes=attributes)


@dataclass
class TypedMask(MaskFiles):
    """The union mask (`paths`) whose pixels take the type of the typed mask covering them
    (`typed`, one per type in `kinds`). When a union pixel is in no typed mask, the sample does not
    say its type: no class mask."""

    typed: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        union = self.load(base, size, max_pixels) > 0
        layers = [(kind, self._file(base, rel, size, max_pixels) & union) for kind, rel in zip(self.kinds, self.typed)]
        index, names = stack_classes(layers, union.shape)
        return (index, names) if np.array_equal(index > 0, union) else None

    def fingerprint(self, base: Path) -> str:
        typed = MaskFiles(self.typed, half_max=True, labels=self.kinds)
        return f"{super().fingerprint(base)}+{typed.fingerprint(base)}"
