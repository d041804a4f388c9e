"""Crack500 (Yang et al., "Feature Pyramid and Hierarchical Boosting Network for Pavement Crack
Detection", IEEE T-ITS 2019; Zhang et al., ICIP 2016). License unstated (research).

Native layout (the commonly distributed crop release): pavement crops `*.jpg` with a binary mask
`<stem>_mask.png` next to each, usually in `traincrop/`, `valcrop/`, `testcrop/`, and split lists
`train.txt`, `val.txt`, `test.txt` at the root, one crop per line: either `<image>` alone or
`<image> <mask>` (root-relative paths).

The widely used re-packaged layout (e.g. in crack-segmentation repositories) is read too:
`Crack500/{train,val,test}/images/<stem>.jpg` with `Crack500/{train,val,test}/masks/<stem>.png`,
masks in their own folder under the image's own stem (no `_mask` suffix), the split given by the
folder above `images/`. Both layouts are recognised per file, so the root may be `Crack500/` or a
folder above it.

Quirks handled:
* a file whose stem ends in `_mask`, or any file in a `masks/` (or `mask/`) folder, is a mask, never
  an image; an image's mask is the listed mask path, else `<stem>_mask.<png|jpg|bmp>` in its folder,
  else, for an image in an `images/` (or `image/`) folder, `<stem>.<png|jpg|bmp>` (or
  `<stem>_mask.*`) in the sibling `masks/` folder (all case-insensitive); masks stored as JPEG are
  thresholded above 127, others above 0 (0/1 and 0/255 alike); an image without a mask is quarantined;
* list paths are matched tolerantly: exact, case-insensitive, with leading folders the local copy
  lacks (e.g. `CRACK500/traincrop/x.jpg`), or by unique file name; a listed image that is not found
  is quarantined (the run goes on);
* split from the lists (`train`, `val` -> validation, `test`), else from the split folder above
  `images/` (`train`, `val`, `test`, any case); other images, or every image when there is neither, get a seeded split grouped by the original photo (the `YYYYMMDD_HHMMSS`
  prefix of the crop name, else the stem), `split_origin = seeded`, `source_split = ""`;
* images are found recursively below the root (hidden files and `__MACOSX` skipped); every crop
  shows a crack (label defective).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import SPLIT_MAP, RawSample, RootError, SourceAdapter, is_image
from ..sourcekit.masks import MaskFiles

CRACK = "crack"
LISTS = ("train.txt", "val.txt", "test.txt")
MASK_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_DIRS = ("images", "image")
MASK_DIRS = ("masks", "mask")
_PHOTO = re.compile(r"^(\d{8}_\d{6})")


def _walk(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in rel):
            continue
        if path.is_file() and is_image(path):
            out.append(path)
    return out


def _is_mask(path: Path) -> bool:
    return path.stem.lower().endswith("_mask") or path.parent.name.lower() in MASK_DIRS


def _mask_candidates(rel: str) -> list[str]:
    """Lower-case root-relative paths an image's mask may have, in order of preference."""
    folder, _, name = rel.lower().rpartition("/")
    stem = name.rsplit(".", 1)[0]
    prefix = f"{folder}/" if folder else ""
    out = [f"{prefix}{stem}_mask{ext}" for ext in MASK_EXTS]
    parent, _, leaf = folder.rpartition("/")
    if leaf in IMAGE_DIRS:  # `<split>/images/x.jpg` -> `<split>/masks/x.png`
        up = f"{parent}/" if parent else ""
        out += [f"{up}{masks}/{stem}{suffix}{ext}" for masks in MASK_DIRS for suffix in ("", "_mask")
                for ext in MASK_EXTS]
    return out


def _folder_split(rel: str) -> str | None:
    """The split folder above an `images/` folder (`train/images/x.jpg` -> `train`), if any."""
    parts = rel.split("/")
    if len(parts) >= 3 and parts[-2].lower() in IMAGE_DIRS and parts[-3].lower() in SPLIT_MAP:
        return parts[-3]
    return None


def _threshold(mask_rel: str) -> int:
    return 127 if mask_rel.lower().endswith((".jpg", ".jpeg")) else 0


class Crack500Adapter(SourceAdapter):
    id = "crack500"
    expected = ("crops *.jpg with <stem>_mask.png (traincrop/ ... and train/val/test.txt), or "
                "{train,val,test}/images/ with masks/")
    labels = (CRACK,)

    def samples(self) -> Iterator[RawSample | Quarantined]:
        files = _walk(self.root)
        rels = {f.relative_to(self.root).as_posix().lower(): f.relative_to(self.root).as_posix() for f in files}
        by_name: dict[str, list[str]] = {}
        for low in rels:
            by_name.setdefault(low.rsplit("/", 1)[-1], []).append(low)
        images = [f for f in files if not _is_mask(f)]
        if not images:
            raise RootError(f"{self.root}: no crack images found (expected {self.expected})")

        def find(listed: str) -> str | None:
            parts = [p for p in listed.replace("\\", "/").lower().split("/") if p not in ("", ".")]
            for i in range(len(parts)):
                candidate = "/".join(parts[i:])
                if candidate in rels:
                    return rels[candidate]
            names = by_name.get(parts[-1], []) if parts else []
            return rels[names[0]] if len(names) == 1 else None

        listed: dict[str, tuple[str, str | None]] = {}  # image rel -> (list split, mask rel)
        for name in LISTS:
            path = next((p for p in sorted(self.root.iterdir()) if p.is_file() and p.name.lower() == name), None)
            if path is None:
                continue
            split = name[: -len(".txt")]
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                image = find(fields[0])
                if image is None:
                    yield Quarantined(source=self.source_id, path=fields[0],
                                      reason=f"listed in {path.name} line {n} but not found")
                    continue
                mask = find(fields[1]) if len(fields) > 1 else None
                listed.setdefault(image, (split, mask))

        for image in images:
            rel = image.relative_to(self.root).as_posix()
            split, mask = listed.get(rel, (None, None))
            split = split or _folder_split(rel)
            if mask is None:
                mask = next((rels[k] for k in _mask_candidates(rel) if k in rels), None)
            if mask is None:
                in_images = image.parent.name.lower() in IMAGE_DIRS
                wanted = f"masks/{image.stem}.png" if in_images else f"{image.stem}_mask.png"
                yield Quarantined(source=self.source_id, path=rel, reason=f"mask {wanted} not found")
                continue
            m = _PHOTO.match(image.stem)
            common = (dict(source_split=split) if split else
                      dict(source_split="", split=self.seeded(m.group(1) if m else image.stem.lower()),
                           split_origin="seeded"))
            yield RawSample(
                rel_path=rel, product="pavement", label="defective", source_labels=[CRACK],
                mask=MaskFiles([mask], threshold=_threshold(mask)), **common,
            )
