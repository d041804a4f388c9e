"""MVTec-style trees (`<category>/<split>/<class>/<img>` + `<category>/ground_truth/<class>/<mask>`),
shared by MVTec AD, the converted VisA_pytorch copy and the demo data."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from .base import RawSample, RootError, SPLIT_MAP, is_image, sorted_dirs, sorted_images

GROUND_TRUTH_DIRS = ("ground_truth", "gt")


def is_category_dir(path: Path) -> bool:
    return any((path / split).is_dir() for split in SPLIT_MAP)


def find_categories(root: Path, wanted: Iterable[str] | None = None) -> tuple[Path, list[Path]]:
    """(dataset root, category folders); `root` may be the dataset root or one category folder.

    Paths in records are relative to the dataset root, so keys do not depend on which folder the
    user pointed at. RootError when there is no category.
    """
    if is_category_dir(root):
        return root.parent, [root]
    cats = [d for d in sorted_dirs(root) if is_category_dir(d)]
    if wanted:
        wanted = set(wanted)
        missing = wanted - {c.name for c in cats}
        if missing:
            raise RootError(f"{root}: categories not found: {', '.join(sorted(missing))}")
        cats = [c for c in cats if c.name in wanted]
    if not cats:
        raise RootError(f"{root}: no category folders with train/ or test/ inside (is this the unpacked root?)")
    return root, cats


def _mask_index(category: Path, defect: str) -> dict[str, Path]:
    """Masks of one defect class by lower-cased stem, `_mask` suffix removed."""
    index: dict[str, Path] = {}
    for gt in GROUND_TRUTH_DIRS:
        folder = category / gt / defect
        for mask in sorted_images(folder):
            stem = mask.stem.lower()
            index.setdefault(stem[:-5] if stem.endswith("_mask") else stem, mask)
    return index


def iter_mvtec_tree(base: Path, categories: list[Path], normal_names: set[str]) -> Iterator[RawSample]:
    """Every image of every split/class folder, paired with its mask by stem; paths relative to `base`."""
    for category in categories:
        for split_dir in sorted_dirs(category):
            if split_dir.name.lower() not in SPLIT_MAP:
                continue
            for class_dir in sorted_dirs(split_dir):
                normal = class_dir.name.lower() in normal_names
                masks = {} if normal else _mask_index(category, class_dir.name)
                for image in sorted_images(class_dir):
                    mask = masks.get(image.stem.lower())
                    yield RawSample(
                        rel_path=image.relative_to(base).as_posix(),
                        product=category.name,
                        source_split=split_dir.name,
                        label="normal" if normal else "defective",
                        source_labels=[class_dir.name],
                        mask_path=mask.relative_to(base).as_posix() if mask else None,
                    )


__all__ = ["find_categories", "iter_mvtec_tree", "is_image"]
