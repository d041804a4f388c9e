"""Generic `mvtec_like` adapter: a user's own data in the MVTec AD folder shape.

Layout: `<root>/<category>/<split>/<class>/<image>` with masks in
`<root>/<category>/ground_truth/<class>/<stem>_mask.<ext>`; the root may also be one category folder
(record paths then stay relative to its parent, so keys do not depend on which folder was given).
A category is any folder holding a split folder (train, test, val/valid/validation, any case).
The category name is the record's product (`--opt product=` overrides it for every record).

Quirks handled beyond the MVTec adapter (shared walker: `sourcekit/mvtec_tree.py`):
* the normal class is not only `good`: `--opt normal=good,ok` sets the names (default: good, ok,
  normal, none, pass, no_defect, ... see `folder.DEFAULT_NORMAL`), compared case-insensitively;
* split and ground-truth folders in any case (`Train/`, `GroundTruth/`; split names as in
  base.SPLIT_MAP), ground truth also in
  `gt/`, `masks/` or `mask/`;
* masks named `<stem>_mask`, `<stem>_gt`, `<stem>-mask` or plain `<stem>`, any image extension
  (JPEG masks thresholded at 127, `--opt mask_threshold=N` overrides);
* a defective image without mask is kept as a class-only sample.
`--category` filters categories (an unknown one is a run-level error).
"""

from __future__ import annotations

from pathlib import Path

from ..sourcekit.base import sorted_dirs
from ..sourcekit.masks import MaskSource
from ..sourcekit.mvtec_tree import GROUND_TRUTH_DIRS, MVTecTreeAdapter, find_tree, mask_index
from ..sourcekit.options import CategoryOptions, MaskThresholdOptions, NormalOptions, ProductOptions
from .folder import MASK_DIR_NAMES, MaskIndex, mask_files, normal_names, split_name

GT_DIR_NAMES = ("ground_truth", "groundtruth", "ground-truth", *MASK_DIR_NAMES)


class MVTecLikeAdapter(MVTecTreeAdapter):
    id = "mvtec_like"
    expected = "<category>/<split>/<class>/ images with ground_truth/<class>/<stem>_mask.* masks"

    class Options(ProductOptions, NormalOptions, MaskThresholdOptions, CategoryOptions):
        pass

    generic = True
    annotation_kinds = ("mask", "class")
    flag_missing = False  # a defective image without mask is a class-only sample

    def locate(self) -> Path:
        self.normal_names = frozenset(normal_names(self.options))
        # categories are matched by folder name only (`--opt product=` names records, not folders)
        self.base, self.categories = find_tree(self.root, self.options.get("categories"), self.is_category)
        return self.base

    def product_name(self, folder_name: str) -> str:
        product = self.options.get("product")
        return str(product) if product else folder_name

    def split_of(self, source_split: str) -> str | None:
        return split_name(source_split)

    def class_masks(self, category: Path, class_dir: Path) -> tuple[MaskIndex | None, dict[str, Path]]:
        """The class's folder under any ground-truth spelling, and MVTec's own `_mask` pairing."""
        return (self._gt_index(category, class_dir.name),
                mask_index(category / gt / class_dir.name for gt in GROUND_TRUTH_DIRS))

    def mask_for(self, category: Path, class_dir: Path, image: Path, masks) -> MaskSource | None:
        index, by_stem = masks
        found = index.find([""], image.stem) if index is not None else None
        if found is None:
            found = by_stem.get(image.stem.lower())
        return mask_files(self, [self.rel(found)]) if found is not None else None

    @staticmethod
    def _gt_index(category: Path, class_name: str) -> MaskIndex | None:
        for gt in sorted_dirs(category):
            if gt.name.lower() in GT_DIR_NAMES:
                folder = next((d for d in sorted_dirs(gt) if d.name.lower() == class_name.lower()), None)
                if folder is not None:
                    return MaskIndex(folder)
        return None
