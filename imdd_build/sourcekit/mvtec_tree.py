"""The one MVTec-style tree walker (`<category>/<split>/<class>/<image>` + `<category>/ground_truth/<class>/`),
shared by MVTec AD, the VisA_pytorch copy, the demo data, the generic `mvtec_like` adapter, BTAD, MPDD,
MIAD, MVTec LOCO, MVTec 3D-AD, and (its root finder and mask kind) Eyecandies and Real-IAD.

* `find_tree` locates the dataset root and its category folders: the root may be the dataset root,
  one category folder, or a folder wrapping the dataset root (the archive's top folder, e.g.
  `BTech_Dataset_transformed/`); a category that only holds a stray nested copy of itself
  (`01/01/train/...`) is followed into the copy. Record paths stay relative to the dataset root, so
  keys do not depend on which of those folders the user pointed at.
* `HalfMaxMask` binarises masks whatever their scale: 0/1, 0/255, anti-aliased 0..255 edges.
* `MVTecTreeAdapter` walks `<category>/<split>/<class>/<image>` with pairing hooks that the
  per-source adapters override (mask folders, `rgb/` + `gt/` sub-folders, other normal spellings,
  the mask kind, the split and product of a record).

The dataset root is located in `locate()` when the adapter is constructed, so a wrong root fails at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from ..record import Quarantined
from .base import SPLIT_MAP, RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from .masks import MaskFiles, MaskSource
from .options import CategoryOptions

GROUND_TRUTH_DIRS = ("ground_truth", "gt")


def HalfMaxMask(paths: list[str]) -> MaskFiles:  # noqa: N802  (reads like the mask kind it makes)
    """The union of mask files, each binarised at half its own maximum (see MaskFiles.half_max)."""
    return MaskFiles(paths, half_max=True)


def has_split_dirs(path: Path) -> bool:
    return any(d.name.lower() in SPLIT_MAP for d in sorted_dirs(path))


def _follow_nested_copy(category: Path, is_category: Callable[[Path], bool]) -> Path:
    """`cat/cat/train/...` (a stray nested copy from unpacking twice): use the inner folder."""
    inner = category / category.name
    if not is_category(category) and inner.is_dir() and is_category(inner):
        return inner
    return category


def find_tree(root: Path, wanted: Iterable[str] | None = None,
              is_category: Callable[[Path], bool] = has_split_dirs,
              name_of: Callable[[str], str] = lambda n: n) -> tuple[Path, list[Path]]:
    """(dataset root, category folders). `wanted` filters categories by folder name or by
    `name_of(folder name)` (the product name). RootError when nothing usable is there."""
    if is_category(root):
        return root.parent, [root]
    candidates = [root, *sorted_dirs(root)]  # the root itself, else one wrapper folder below it
    base, cats = root, []
    for folder in candidates:
        found = [_follow_nested_copy(d, is_category) for d in sorted_dirs(folder)]
        found = [d for d in found if is_category(d)]
        if found:
            base, cats = folder, found
            break
    if not cats:
        raise RootError(f"{root}: no category folders with split folders (train/, test/, ...) inside "
                        "(is this the unpacked dataset root?)")
    if wanted:
        wanted = {str(w) for w in wanted}
        names = {c.name: {c.name, name_of(c.name), c.name.lower(), name_of(c.name).lower()} for c in cats}
        known = set().union(*names.values())
        missing = {w for w in wanted if w not in known and w.lower() not in known}
        if missing:
            raise RootError(f"{root}: categories not found: {', '.join(sorted(missing))}")
        cats = [c for c in cats if names[c.name] & (wanted | {w.lower() for w in wanted})]
    return base, cats


def mask_index(folders: Iterable[Path]) -> dict[str, Path]:
    """Mask files by lower-cased stem with a `_mask` suffix removed (first in sorted order wins)."""
    index: dict[str, Path] = {}
    for folder in folders:
        for mask in sorted_images(folder):
            stem = mask.stem.lower()
            index.setdefault(stem[:-5] if stem.endswith("_mask") else stem, mask)
    return index


class MVTecTreeAdapter(SourceAdapter):
    """`<category>/<split>/<class>/<image>` with masks under `<category>/ground_truth/<class>/`.

    Subclasses set `id`, `normal_names` and override the hooks where their layout differs. By
    default masks are binarised at half their maximum and a defective image without a mask keeps
    `attributes.mask = "missing"`; MVTec AD itself (`half_max = False`, `flag_missing = False`)
    reads its 0/255 masks as they are and adds no attribute.
    """

    normal_names: ClassVar[frozenset[str]] = frozenset({"good"})
    #: Binarise each mask at half its own maximum (else: any non-zero pixel is defect).
    half_max: ClassVar[bool] = True
    #: Mark a defective image without a mask with `attributes.mask = "missing"`.
    flag_missing: ClassVar[bool] = True
    Options = CategoryOptions

    def locate(self) -> Path:
        self.base, self.categories = find_tree(self.root, self.options.get("categories"),
                                               self.is_category, self.product_name)
        return self.base

    # -- hooks ------------------------------------------------------------------------------
    def is_category(self, path: Path) -> bool:
        return has_split_dirs(path)

    def product_name(self, folder_name: str) -> str:
        return folder_name

    def class_images(self, class_dir: Path) -> list[Path]:
        return sorted_images(class_dir)

    def class_masks(self, category: Path, class_dir: Path) -> dict[str, Path]:
        return mask_index(category / gt / class_dir.name for gt in GROUND_TRUTH_DIRS)

    def mask_for(self, category: Path, class_dir: Path, image: Path,
                 masks: dict[str, Path]) -> MaskSource | None:
        found = masks.get(image.stem.lower())
        return MaskFiles([self.rel(found)], half_max=self.half_max) if found else None

    def extra(self, category: Path, class_dir: Path, image: Path, mask: MaskSource | None) -> dict:
        """Source attributes of one defective sample."""
        return {} if mask is not None or not self.flag_missing else {"mask": "missing"}

    def split_of(self, source_split: str) -> str | None:
        """Our split for a split folder's name; None derives it from the name (RawSample.our_split)."""
        return None

    def is_normal(self, class_name: str) -> bool:
        return class_name.lower() in self.normal_names

    # -- walking ----------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix()

    def samples(self) -> Iterator[RawSample | Quarantined]:
        for category in self.categories:
            product = self.product_name(category.name)
            for split_dir in sorted_dirs(category):
                if split_dir.name.lower() not in SPLIT_MAP:
                    continue
                for class_dir in sorted_dirs(split_dir):
                    normal = self.is_normal(class_dir.name)
                    masks = {} if normal else self.class_masks(category, class_dir)
                    for image in self.class_images(class_dir):
                        mask = None if normal else self.mask_for(category, class_dir, image, masks)
                        yield RawSample(
                            rel_path=self.rel(image), product=product, source_split=split_dir.name,
                            split=self.split_of(split_dir.name),
                            label="normal" if normal else "defective", source_labels=[class_dir.name],
                            mask=mask, mask_path=single_file(mask), attributes={} if normal else self.extra(category, class_dir, image, mask),
                        )


def single_file(mask: MaskSource | None) -> str | None:
    """The path of a one-file mask (what `RawSample.mask_path` names), else None."""
    return mask.paths[0] if isinstance(mask, MaskFiles) and len(mask.paths) == 1 else None


def snake_case(name: str) -> str:
    """`CandyCane` / `candy cane` / `candy-cane` -> `candy_cane`."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


__all__ = ["MVTecTreeAdapter", "HalfMaxMask", "find_tree", "has_split_dirs", "mask_index", "snake_case"]
