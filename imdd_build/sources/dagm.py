"""DAGM 2007 (Wieler, Hahn: "Weakly Supervised Learning for Industrial Optical Inspection").

Ten synthetic textures `Class1` .. `Class10`, each with its own kind of defect. Two layouts:

1. The common (Heidelberg HCI / Zenodo / Kaggle) layout, with an official Train/Test split:

       root/Class1/Train/0001.PNG ... 0575.PNG
       root/Class1/Train/Label/Labels.txt
       root/Class1/Train/Label/0576_label.PNG ...
       root/Class1/Test/... (same shape)

   Class folders are found anywhere up to four levels below the root, so redistributions that nest
   one level deeper (`Class1/Class1/Train`) or add an archive folder work; the first (shallowest)
   copy of each class wins and stray deeper copies are ignored. Images are 512x512 gray `.PNG`
   (extensions matched case-insensitively). A weak label, a filled ellipse drawn as a 0/255 image
   `Label/<stem>_label.PNG`, exists only for defective images: an image is `defective` iff its
   label file exists (the mask is that file, > 0). `Labels.txt` is read when present: its first line
   is a header/count line (any line that is not a data row is skipped); data rows are
   whitespace/tab separated `index flag image-name 0 label-name-or-0` (only columns 1 and 2 are
   used). Where its flag disagrees with the label files, the label file decides, the record keeps
   the flag as attribute `labels_txt_flag`, and one quarantine entry on that Labels.txt lists the
   disagreements; rows naming an image that does not exist are quarantined under that image's path.

2. The original 2007 competition layout, without a split: normal images in `ClassN/` and defective
   ones in `ClassN_def/`, next to a text file (`labels.txt`, any name ending in .txt) with one row
   per defective image giving the ellipse that covers the defect. Assumed column order (unverified;
   the original pages are gone): `image-number semi-major-axis semi-minor-axis angle x-centre
   y-centre`, angle in radians (option `ellipse_angle=degrees` switches), all in pixels. The row's
   number is matched to the image whose stem has the same integer value (`1.png`, `0001.PNG`).
   Masks are rendered with `masks.PolygonMask(ellipses=...)`. A defective image without a row is
   kept without a mask (attribute `mask_missing`); a row without an image is quarantined. Splits are
   seeded, one group per image.

The source has no label spellings (each class is one texture with one defect kind, never named):
`source_labels` stays empty, so the canonical type is `anomaly`; the class is the product.
`--category Class3` keeps only that class.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.masks import PolygonMask
from ..sourcekit.options import CategoryOptions, Field, Literal, field_validator

CLASS = re.compile(r"^class(\d+)$", re.IGNORECASE)
CLASS_DEF = re.compile(r"^class(\d+)_def$", re.IGNORECASE)
SPLITS = ("train", "test")


def _split_dirs(folder: Path) -> list[Path]:
    return [d for d in sorted_dirs(folder) if d.name.lower() in SPLITS]


def _class_name(folder: Path) -> str:
    m = CLASS.match(folder.name) or CLASS_DEF.match(folder.name)
    return f"Class{int(m.group(1))}" if m else folder.name


def _stem_key(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return str(int(stem)) if stem.isdigit() else stem.lower()


def read_labels_txt(path: Path) -> dict[str, tuple[int, int, str]]:
    """Labels.txt -> {image name lower-cased: (flag, line, name)}; header/count and odd lines skipped."""
    out: dict[str, tuple[int, int, str]] = {}
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if len(fields) >= 3 and fields[1] in ("0", "1") and "." in fields[2]:
            out[fields[2].lower()] = (int(fields[1]), line_no, fields[2])
    return out


def read_ellipses(path: Path, degrees: bool) -> tuple[dict[str, tuple[float, ...]], list[str]]:
    """Ellipse file -> {image key: (cx, cy, a, b, angle_rad)} and the unreadable lines."""
    out: dict[str, tuple[float, ...]] = {}
    bad: list[str] = []
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            if len(fields) < 6:
                raise ValueError
            a, b, angle, cx, cy = (float(v) for v in fields[1:6])
        except ValueError:
            if line_no > 1 or fields[0].replace(".", "").isdigit():  # a first non-numeric line is a header
                bad.append(f"line {line_no}")
            continue
        out[_stem_key(fields[0])] = (cx, cy, a, b, math.radians(angle) if degrees else angle)
    return out, bad


class DAGMAdapter(SourceAdapter):
    id = "dagm"
    expected = "Class1 ... Class10 with {Train,Test}/*.PNG and Label/*_label.PNG (or the 2007 ClassN/ and ClassN_def/)"

    class Options(CategoryOptions):
        ellipse_angle: Literal["radians", "degrees"] = Field("radians", description="Unit of the ellipse angle in "
                                                                                    "the label files.")

        @field_validator("ellipse_angle", mode="before")
        @classmethod
        def _unit(cls, value):
            text = str(value).lower()
            return "degrees" if text.startswith("deg") else "radians" if text.startswith("rad") else text

    def _find(self) -> tuple[list[Path], list[Path]]:
        """(class folders with Train/Test, ClassN_def folders), first copy of each class only."""
        split_classes: dict[str, Path] = {}
        def_classes: dict[str, Path] = {}
        level = [self.root]
        for _ in range(5):
            nxt = []
            for folder in level:
                if _split_dirs(folder):
                    split_classes.setdefault(_class_name(folder).lower(), folder)
                    continue  # do not descend into a class: its Train/Test are not classes
                if CLASS_DEF.match(folder.name):
                    def_classes.setdefault(_class_name(folder).lower(), folder)
                    continue
                nxt.extend(sorted_dirs(folder))
            level = nxt
        wanted = {c.lower() for c in self.options.get("categories") or []}
        if wanted:
            missing = wanted - set(split_classes) - set(def_classes)
            if missing:
                raise RootError(f"{self.root}: classes not found: {', '.join(sorted(missing))}")
            split_classes = {k: v for k, v in split_classes.items() if k in wanted}
            def_classes = {k: v for k, v in def_classes.items() if k in wanted}
        return list(split_classes.values()), list(def_classes.values())

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.split_classes, self.def_classes = self._find()
        if not self.split_classes and not self.def_classes:
            raise RootError(f"{self.root}: no DAGM class folder with Train/ and Test/ (or ClassN_def) found")
        # Paths are relative to the folder holding the classes (the outer one of `Class1/Class1`),
        # so keys do not depend on which folder above it the user pointed at.
        outer = [c.parent if c.parent.name.lower() == c.name.lower() else c
                 for c in self.split_classes + self.def_classes]
        return Path(os.path.commonpath([str(c.parent) for c in outer]))

    def samples(self) -> Iterator[RawSample | Quarantined]:
        for folder in self.split_classes:
            yield from self._split_class(folder)
        for folder in self.def_classes:
            yield from self._def_class(folder)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix()

    def _split_class(self, folder: Path) -> Iterator[RawSample | Quarantined]:
        product = _class_name(folder)
        for split in _split_dirs(folder):
            label_dir = next((d for d in sorted_dirs(split) if d.name.lower() == "label"), None)
            label_files = {}
            listed: dict[str, tuple[int, int, str]] = {}
            labels_txt = None
            if label_dir is not None:
                for p in sorted_images(label_dir):
                    if p.stem.lower().endswith("_label"):
                        label_files[p.stem.lower()[:-6]] = p
                labels_txt = next((p for p in sorted(label_dir.iterdir())
                                   if p.is_file() and p.name.lower() == "labels.txt"), None)
                if labels_txt is not None:
                    listed = read_labels_txt(labels_txt)
            images = sorted_images(split)
            names = {p.name.lower() for p in images}
            for key, (_, line_no, name) in sorted(listed.items()):
                if key not in names:
                    yield Quarantined(source=self.source_id, path=self._rel(split / name),
                                      reason=f"listed in {self._rel(labels_txt)} line {line_no} but not found")
            disagreements = []
            for image in images:
                label = label_files.get(image.stem.lower())
                flag = listed.get(image.name.lower(), (None,))[0]
                attributes = {}
                if flag is not None and flag != (label is not None):
                    attributes["labels_txt_flag"] = flag
                    disagreements.append(f"{image.name} flag {flag} but "
                                         f"{'no label file' if label is None else 'a label file exists'}")
                yield RawSample(
                    rel_path=self._rel(image), product=product, source_split=split.name,
                    label="defective" if label is not None else "normal",
                    mask_path=self._rel(label) if label is not None else None, attributes=attributes,
                )
            if disagreements:
                yield Quarantined(source=self.source_id, path=self._rel(labels_txt),
                                  reason=f"{len(disagreements)} row(s) disagree with the label files (the "
                                         f"label files decide): {'; '.join(disagreements)}")

    def _def_class(self, folder: Path) -> Iterator[RawSample | Quarantined]:
        product = _class_name(folder)
        degrees = str(self.options.get("ellipse_angle", "radians")).lower().startswith("deg")
        ellipses: dict[str, tuple[float, ...]] = {}
        for txt in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".txt"
                          and not p.name.startswith(".")):
            found, bad = read_ellipses(txt, degrees)
            ellipses.update(found)
            if bad:
                yield Quarantined(source=self.source_id, path=self._rel(txt),
                                  reason=f"unreadable ellipse rows ({', '.join(bad)}): expected "
                                         "number, semi-major, semi-minor, angle, x-centre, y-centre")
        normal_dir = next((d for d in sorted_dirs(folder.parent) if d.name.lower() == product.lower()
                           and not _split_dirs(d)), None)
        for image in sorted_images(normal_dir) if normal_dir is not None else []:
            yield RawSample(rel_path=self._rel(image), product=product, source_split="", label="normal",
                            split=self.seeded(f"{product}/{image.stem}"), split_origin="seeded")
        images = sorted_images(folder)
        keys = {_stem_key(p.name) for p in images}
        for key in sorted(set(ellipses) - keys):
            yield Quarantined(source=self.source_id, path=self._rel(folder / key),
                              reason="ellipse row for an image that is not in the folder")
        for image in images:
            ellipse = ellipses.get(_stem_key(image.name))
            yield RawSample(
                rel_path=self._rel(image), product=product, source_split="", label="defective",
                mask=PolygonMask(ellipses=[ellipse]) if ellipse else None,
                split=self.seeded(f"{product}_def/{image.stem}"), split_origin="seeded",
                attributes={"ellipse": list(ellipse)} if ellipse else {"mask_missing": True},
            )
