"""Generic `mvtec_like` adapter: a user's own data in the MVTec AD folder shape.

Layout: `<root>/<category>/<split>/<class>/<image>` with masks in
`<root>/<category>/ground_truth/<class>/<stem>_mask.<ext>`; the root may also be one category folder
(record paths then stay relative to its parent, so keys do not depend on which folder was given).
A category is any folder holding a split folder (train, test, val/valid/validation, any case).
The category name is the record's product (`--opt product=` overrides it for every record).

Quirks handled beyond the MVTec adapter (shared code in `mvtec_tree.py`):
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

from collections.abc import Iterator
from pathlib import Path

from .base import SPLIT_MAP, RawSample, RootError, SourceAdapter, sorted_dirs
from .folder import MASK_DIR_NAMES, MaskIndex, mask_files, normal_names, split_name
from .mvtec_tree import iter_mvtec_tree
from .options import CategoryOptions, MaskThresholdOptions, NormalOptions, ProductOptions

GT_DIR_NAMES = ("ground_truth", "groundtruth", "ground-truth", *MASK_DIR_NAMES)


def _is_category(path: Path) -> bool:
    return any(d.name.lower() in SPLIT_MAP for d in sorted_dirs(path))


class MVTecLikeAdapter(SourceAdapter):
    id = "mvtec_like"
    expected = "<category>/<split>/<class>/ images with ground_truth/<class>/<stem>_mask.* masks"

    class Options(ProductOptions, NormalOptions, MaskThresholdOptions, CategoryOptions):
        pass

    generic = True
    annotation_kinds = ("mask", "class")

    def categories(self) -> tuple[Path, list[Path]]:
        if _is_category(self.root):
            return self.root.parent, [self.root]
        cats = [d for d in sorted_dirs(self.root) if _is_category(d)]
        wanted = self.options.get("categories")
        if wanted:
            missing = set(wanted) - {c.name for c in cats}
            if missing:
                raise RootError(f"{self.root}: categories not found: {', '.join(sorted(missing))}")
            cats = [c for c in cats if c.name in set(wanted)]
        if not cats:
            raise RootError(f"{self.root}: no category folders with train/ or test/ inside "
                            "(expected <root>/<category>/<split>/<class>/*)")
        return self.root, cats

    def samples(self) -> Iterator[RawSample]:
        self.base, categories = self.categories()
        normals = normal_names(self.options)
        indexes: dict[tuple[Path, str], MaskIndex | None] = {}
        product = self.options.get("product")
        for sample in iter_mvtec_tree(self.base, categories, normals):
            rel = Path(sample.rel_path)
            category = self.base / rel.parts[0]
            if sample.label == "defective":
                class_name = sample.source_labels[0]
                found = None
                if (category, class_name) not in indexes:
                    indexes[(category, class_name)] = self._gt_index(category, class_name)
                index = indexes[(category, class_name)]
                if index is not None:
                    found = index.find([""], rel.stem)
                if found is not None:
                    sample.mask = mask_files(self, [found.relative_to(self.base).as_posix()])
                elif sample.mask is not None:  # mvtec_tree's `_mask` pairing: keep, with our threshold
                    sample.mask = mask_files(self, list(sample.mask.paths))
            sample.split = split_name(sample.source_split)
            if product:
                sample.product = str(product)
            yield sample

    @staticmethod
    def _gt_index(category: Path, class_name: str) -> MaskIndex | None:
        for gt in sorted_dirs(category):
            if gt.name.lower() in GT_DIR_NAMES:
                folder = next((d for d in sorted_dirs(gt) if d.name.lower() == class_name.lower()), None)
                if folder is not None:
                    return MaskIndex(folder)
        return None
