"""Casting product images (Kaggle "real-life-industrial-dataset-of-casting-product", pump impellers).

Native layout (the Kaggle zip unpacks with doubled folder names):
`casting_data/casting_data/{train,test}/{def_front,ok_front}/cast_*.jpeg` (300x300, the augmented
set with an official train/test split) and `casting_512x512/casting_512x512/{def_front,ok_front}/`
(the 512x512 originals, no split). Labels come only from the folder: `def_front` is defective
(defect kind not given), `ok_front` is normal.

Quirks handled:
* the 300 px set is derived from the 512 px set, so the two are near-duplicates: exactly one is
  ingested, chosen with `--opt variant=300` (default, official split) or `--opt variant=512`
  (seeded split by file stem); asking for a set that is not there is a root error;
* doubled folder names are optional (`casting_data/train/...` and a root pointed at the inner
  folder work too); folder names and the `.jpeg`/`.jpg` extension match case-insensitively;
* paths are relative to the folder the user pointed at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..sourcekit.base import SPLIT_MAP, RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.options import AdapterOptions, Field, Literal, field_validator

CLASSES = {"def_front": "defective", "ok_front": "normal"}
VARIANTS = {"300": "casting_data", "512": "casting_512x512"}


def _child(parent: Path, name: str) -> Path | None:
    return next((d for d in sorted_dirs(parent) if d.name.lower() == name.lower()), None)


def _has_classes(path: Path) -> bool:
    return any(d.name.lower() in CLASSES for d in sorted_dirs(path))


def _has_splits(path: Path) -> bool:
    return any(d.name.lower() in SPLIT_MAP and _has_classes(d) for d in sorted_dirs(path))


def _candidates(root: Path, folder: str) -> list[Path]:
    outer = _child(root, folder)
    inner = _child(outer, folder) if outer is not None else None
    out = [p for p in (inner, outer) if p is not None]
    if root.name.lower() == folder.lower():
        out += [p for p in (_child(root, folder), root) if p is not None]
    return out


class CastingAdapter(SourceAdapter):
    id = "casting"
    expected = "casting_data/{train,test}/{def_front,ok_front}/*.jpeg (or casting_512x512/{def_front,ok_front}/)"

    class Options(AdapterOptions):
        variant: Literal["300", "512"] = Field("300", description="Which image set: 300 (the official split) or "
                                                                 "512 px.")

        @field_validator("variant", mode="before")
        @classmethod
        def _px(cls, value):
            return str(value).lower().removesuffix("px")

    labels = tuple(CLASSES)

    def _variant(self) -> str:
        variant = str(self.options.get("variant", "300")).lower().removesuffix("px")
        if variant in ("512x512",):
            variant = "512"
        if variant not in VARIANTS:
            raise RootError(f"--opt variant={variant}: expected 300 or 512")
        return variant

    def _find(self, variant: str) -> Path | None:
        check = _has_splits if variant == "300" else _has_classes
        for path in _candidates(self.root, VARIANTS[variant]):
            if check(path):
                return path
        return self.root if check(self.root) else None

    def samples(self) -> Iterator[RawSample]:
        variant = self._variant()
        folder = self._find(variant)
        if folder is None:
            other = "512" if variant == "300" else "300"
            hint = f"; the {other} px set is there: use --opt variant={other}" if self._find(other) else ""
            raise RootError(f"{self.root}: the {variant} px casting set ({VARIANTS[variant]}/) was not found{hint}")
        if variant == "300":
            for split_dir in sorted_dirs(folder):
                if split_dir.name.lower() in SPLIT_MAP:
                    yield from self._classes(split_dir, split_dir.name, variant)
        else:
            yield from self._classes(folder, "", variant)

    def _classes(self, folder: Path, source_split: str, variant: str) -> Iterator[RawSample]:
        for cls in sorted_dirs(folder):
            label = CLASSES.get(cls.name.lower())
            if label is None:
                continue
            for image in sorted_images(cls):
                seeded = {} if source_split else {"split": self.seeded(image.stem), "split_origin": "seeded"}
                yield RawSample(
                    rel_path=image.relative_to(self.root).as_posix(), product="impeller",
                    source_split=source_split, label=label, source_labels=[cls.name],
                    attributes={"variant": int(variant)}, **seeded,
                )
