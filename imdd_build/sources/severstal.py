"""Severstal: Steel Defect Detection (Kaggle competition, 2019). Kaggle competition rules.

Native layout (the competition download, unzipped):

    root/train.csv            labels, run-length encoded per (image, class)
    root/train_images/*.jpg   1600x256 flat-steel images (3-channel, effectively gray)
    root/test_images/*.jpg    competition test images: NO labels -> not ingested (skipped on purpose)
    root/sample_submission.csv

The root may also be one folder above (a `severstal-steel-defect-detection/` level), found by looking
for `train.csv` next to `train_images/` (names matched case-insensitively).

`train.csv` comes in two versions, both read:
* final: header `ImageId,ClassId,EncodedPixels`, one row per (image, class) that has a defect;
* old: header `ImageId_ClassId,EncodedPixels`, four rows per image (`0002cc93b.jpg_1` .. `_4`) with
  an empty EncodedPixels for classes that are absent.
Rows with an empty EncodedPixels are ignored; an image with no non-empty row, or absent from the CSV
altogether, is defect-free (label `normal`, no source label: the source has no normal spelling).
A listed image that is not in `train_images/` is quarantined.

Masks: EncodedPixels is "start length start length ...", 1-based, numbered column-major (top to
bottom, then left to right) over the 256x1600 image: decoded with `masks.RleMask` (order "F").
An image may have several classes: their runs are OR-ed into one binary mask (pixels claimed by two
classes, which is rare, simply count once), and each RLE keeps its ClassId for `class_mask` (the
later class wins an overlap; the taxonomy maps every ClassId to `anomaly` unless `--label-map`
names them). The class ids stay in `source_labels` (the CSV spelling "1".."4") and in attributes
`class_ids`, with the number of pixels each class's runs cover in `class_pixels`. A malformed RLE (odd count, run outside the
image) quarantines that image at ingest, as does an image whose size is not the RLE shape.
Option `rle_shape=HxW` (default 256x1600) changes the shape the runs are numbered over.

No official split for labelled data: seeded split, one group per image id (no finer grouping known).
The community names of the classes (pitting, crazing/inclusion, scratches, patches) are not official
and are not used; taxonomy.yaml maps the class ids to `anomaly`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, is_image
from ..sourcekit.masks import RleMask
from ..sourcekit.options import AdapterOptions, Field, Optional
from ..sourcekit.search import search_below

SHAPE = (256, 1600)  # (height, width) of every Severstal image


def _child_ci(folder: Path, name: str) -> Path | None:
    if not folder.is_dir():
        return None
    return next((c for c in sorted(folder.iterdir()) if c.name.lower() == name.lower()), None)


def _parse_shape(value) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in str(value).lower().split("x"))
    except ValueError:
        raise RootError(f"--opt rle_shape={value!r}: expected HEIGHTxWIDTH, e.g. 256x1600") from None
    return h, w


def read_train_csv(path: Path) -> tuple[dict[str, dict[int, list[str]]], list[Quarantined]]:
    """{image id: {class id: [rle, ...]}} from either CSV version (images with no row are absent)."""
    out: dict[str, dict[int, list[str]]] = {}
    problems: list[Quarantined] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        lower = [h.lower() for h in header]
        if lower[:3] == ["imageid", "classid", "encodedpixels"]:
            old = False
        elif lower[:2] == ["imageid_classid", "encodedpixels"]:
            old = True
        else:
            raise RootError(f"{path}: unknown header {header} (expected ImageId,ClassId,EncodedPixels "
                            "or ImageId_ClassId,EncodedPixels)")
        for line, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            try:
                if old:
                    image, _, cls = row[0].strip().rpartition("_")
                    rle = row[1] if len(row) > 1 else ""
                else:
                    image, cls, rle = row[0].strip(), row[1], row[2] if len(row) > 2 else ""
                class_id = int(cls)
            except (IndexError, ValueError):
                problems.append(Quarantined(source="severstal", path=path.name,
                                            reason=f"line {line}: unreadable row {row!r}"))
                continue
            entry = out.setdefault(image, {})
            if rle.strip():
                entry.setdefault(class_id, []).append(rle.strip())
    return out, problems


def _run_pixels(rles: list[str]) -> int | None:
    """Sum of the run lengths (pixels a class covers before OR-ing); None when the RLE is malformed."""
    try:
        return sum(int(n) for rle in rles for n in rle.split()[1::2])
    except ValueError:
        return None


def _is_competition_folder(folder: Path) -> bool:
    images = _child_ci(folder, "train_images")
    return bool(_child_ci(folder, "train.csv")) and images is not None and images.is_dir()


class SeverstalAdapter(SourceAdapter):
    id = "severstal"
    expected = "train.csv with train_images/*.jpg"

    class Options(AdapterOptions):
        rle_shape: Optional[str] = Field(None, description="HEIGHTxWIDTH of the RLE masks (default 256x1600).")

    def locate(self) -> Path:
        found = search_below(self.root, _is_competition_folder)
        if found is not None:
            return found[0]
        raise RootError(f"{self.root}: no train.csv next to train_images/ (is this the unpacked competition "
                        "folder?)")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        shape = _parse_shape(self.options["rle_shape"]) if self.options.get("rle_shape") else SHAPE
        csv_path = _child_ci(self.base, "train.csv")
        images_dir = _child_ci(self.base, "train_images")
        labels, problems = read_train_csv(csv_path)
        yield from problems
        files = {p.name.lower(): p for p in sorted(images_dir.iterdir()) if p.is_file() and is_image(p)}
        for name in sorted(labels):
            if name.lower() not in files:
                yield Quarantined(source=self.source_id, path=f"{images_dir.name}/{name}",
                                  reason=f"listed in {csv_path.name} but not found in {images_dir.name}/")
        by_lower = {k.lower(): v for k, v in labels.items()}
        for key in sorted(files):
            image = files[key]
            classes = by_lower.get(key, {})
            class_ids = sorted(classes)
            defective = bool(class_ids)
            attributes = {}
            if defective:
                attributes = {"class_ids": class_ids,
                              "class_pixels": {str(c): _run_pixels(classes[c]) for c in class_ids}}
            yield RawSample(
                rel_path=image.relative_to(self.base).as_posix(), product="steel", source_split="",
                label="defective" if defective else "normal", source_labels=[str(c) for c in class_ids],
                mask=RleMask([rle for c in class_ids for rle in classes[c]], shape,
                             labels=[str(c) for c in class_ids for _ in classes[c]]) if defective else None,
                split=self.seeded(image.stem.lower()), split_origin="seeded", attributes=attributes,
            )
