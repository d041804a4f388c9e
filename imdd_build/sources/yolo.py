"""Generic `yolo` adapter: images with YOLO (Ultralytics / Darknet) text labels.

Layouts (detected from the root):
* `images/<split>/**` + `labels/<split>/**.txt` (split folders train, val, valid, test, also with
  digits such as `train2017`; other folders in `images/` are reported and skipped);
* `<split>/images/**` + `<split>/labels/**.txt` (the Roboflow export: train/valid/test);
* `images/**` + `labels/**.txt` with no split level: seeded splits (grouped by image path, or by
  `--opt group=<regex>`).
The label file of `images/<split>/a/b.jpg` is `labels/<split>/a/b.txt`; a `.txt` next to the image
(Darknet style) is accepted too. Any image extension, any case; hidden files and `__MACOSX` skipped.

Class names: `--opt names=a,b,c`, else `names` of `data.yaml` / `dataset.yaml` (or any `*.yaml` in
the root holding `names`), as a list or as a {id: name} mapping, else `classes.txt` / `obj.names` /
`classes.names` (one name per line). Without any, the class id itself (`"3"`) is the label (map it
with `--label-map`). Names that are normal names (good, ok, ... `--opt normal=`) carry no box.

Label lines:
* `class cx cy w h` (normalized to the image size) -> a box;
* `class x1 y1 x2 y2 ... xn yn` (n >= 3, normalized) -> a polygon; when every object of the image is
  a polygon, the polygons make the mask (`NormalizedPolygonMask`, scaled at load time) and each
  polygon's extent is its box; with a mix, the image gets boxes only.
An empty or missing label file means a normal image. Boxes need the image size, read from the
image header (EXIF orientation applied, as Ultralytics does); an image whose header cannot be read
gets no boxes here and is quarantined by the normalizer. A label file with a line that is not a
box or polygon (wrong count, not numbers, coordinates outside 0..1, a class id without name)
quarantines its image with the line number. Label files without image are reported.
`--opt product=<name>` sets the product (default: the --domain, else unknown).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, resolve_ci, sorted_dirs
from .folder import is_normal, normal_names, opt_list, product_of, seeded_group, split_name, walk_images
from ..sourcekit.masks import MaskSource, _digest, stack_classes
from ..sourcekit.options import Field, GenericOptions, Optional, field_validator

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
NAME_FILES = ("classes.txt", "obj.names", "classes.names", "class_names.txt")
_TOLERANCE = 1e-3


@dataclass
class NormalizedPolygonMask(MaskSource):
    """Filled polygons with coordinates normalized to 0..1 of the image width/height."""

    polygons: list[list[float]] = field(default_factory=list)
    labels: list[str] | None = None  # the class name of each polygon

    def _draw(self, polygons: list[list[float]], size: tuple[int, int]) -> np.ndarray:
        w, h = size
        im = Image.new("L", size, 0)
        draw = ImageDraw.Draw(im)
        for poly in polygons:
            draw.polygon([(poly[i] * w, poly[i + 1] * h) for i in range(0, len(poly) - 1, 2)], fill=255)
        return np.asarray(im).copy()

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        return self._draw(self.polygons, size)

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        if self.labels is None or len(self.labels) != len(self.polygons):
            return None
        return stack_classes([(label, self._draw([poly], size) > 0) for label, poly in zip(self.labels, self.polygons)],
                             (size[1], size[0]))

    def fingerprint(self, base: Path) -> str:
        return _digest({"normalized_polygons": self.polygons, **({"labels": self.labels} if self.labels else {})})

    def describe(self) -> str | None:
        return f"yolo:{len(self.polygons)} polygons"


class LabelError(ValueError):
    """A label file line is unusable."""


def oriented_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header, after EXIF orientation; None when unreadable."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = int(im.getexif().get(0x0112, 1))
            except Exception:
                orientation = 1
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def parse_label_file(text: str) -> list[tuple[int, list[float]]]:
    """[(class id, normalized coordinates)] of every non-empty line; LabelError with the line number."""
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            cls = int(float(tokens[0]))
            coords = [float(t) for t in tokens[1:]]
        except ValueError:
            raise LabelError(f"line {line_no}: not numbers: {line.strip()[:60]!r}") from None
        if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            raise LabelError(f"line {line_no}: {len(tokens)} values, expected 'class cx cy w h' (5) "
                             "or 'class x1 y1 ... xn yn' (n >= 3)")
        if any(c < -_TOLERANCE or c > 1 + _TOLERANCE for c in coords):
            raise LabelError(f"line {line_no}: coordinates are not normalized to 0..1")
        if len(coords) == 4 and (coords[2] <= 0 or coords[3] <= 0):
            raise LabelError(f"line {line_no}: box with zero width or height")
        out.append((cls, coords))
    return out


class YoloAdapter(SourceAdapter):
    id = "yolo"
    expected = "images/ with labels/*.txt (split folders optional)"

    class Options(GenericOptions):
        names: Optional[list[str]] = Field(None, description="Class names a,b,c (default: data.yaml's names).")

        @field_validator("names", mode="before")
        @classmethod
        def _names(cls, value):
            return value if value is None or isinstance(value, list) else [v for v in str(value).split(",") if v]

    generic = True
    annotation_kinds = ("boxes", "mask", "class")

    # -- class names -------------------------------------------------------------------------------
    def class_names(self) -> dict[int, str]:
        given = opt_list(self.options.get("names"))
        if given:
            return dict(enumerate(given))
        yamls = [p for p in (resolve_ci(self.root, n) for n in YAML_NAMES) if p is not None]
        yamls += sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml")
                        and p not in yamls and not p.name.startswith("."))
        for path in yamls:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
            except (OSError, yaml.YAMLError) as exc:
                raise RootError(f"{path}: cannot read: {exc}") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, list):
                return {i: str(n) for i, n in enumerate(names)}
            if isinstance(names, dict):
                try:
                    return {int(k): str(v) for k, v in names.items()}
                except (TypeError, ValueError):
                    raise RootError(f"{path}: `names` keys must be class ids") from None
        for name in NAME_FILES:
            path = resolve_ci(self.root, name)
            if path is not None and path.is_file():
                lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
                return {i: n for i, n in enumerate(ln for ln in lines if ln)}
        return {}

    # -- layout --------------------------------------------------------------------------------------
    def layout(self) -> tuple[list[tuple[str, Path, Path | None]], list[Quarantined]]:
        """[(source split or "", images folder, labels folder or None)], and skipped folders."""
        images = resolve_ci(self.root, "images")
        labels = resolve_ci(self.root, "labels")
        skipped = []
        if images is not None and images.is_dir():
            subs = sorted_dirs(images)
            if any(split_name(d.name) for d in subs):
                out = []
                for d in subs:
                    if not split_name(d.name):
                        skipped.append(Quarantined(source=self.source_id, path=f"{images.name}/{d.name}/",
                                                   reason="folder is not a split (train/val/test); skipped"))
                        continue
                    lab = resolve_ci(labels, d.name) if labels is not None else None
                    out.append((d.name, d, lab if lab is not None and lab.is_dir() else None))
                return out, skipped
            return [("", images, labels if labels is not None and labels.is_dir() else None)], skipped
        out = []
        for d in sorted_dirs(self.root):
            img = resolve_ci(d, "images")
            if split_name(d.name) and img is not None and img.is_dir():
                lab = resolve_ci(d, "labels")
                out.append((d.name, img, lab if lab is not None and lab.is_dir() else None))
        if not out:
            raise RootError(f"{self.root}: no YOLO layout (images/<split>/ + labels/<split>/, "
                            "<split>/images/ + <split>/labels/, or images/ + labels/)")
        return out, skipped

    def samples(self) -> Iterator[RawSample | Quarantined]:
        names = self.class_names()
        normals = normal_names(self.options)
        product = product_of(self)
        folders, skipped = self.layout()
        yield from skipped
        for split, img_dir, lab_dir in folders:
            used: set[Path] = set()
            for image in walk_images(img_dir):
                rel = image.relative_to(self.root).as_posix()
                label_file = self._label_file(image, img_dir, lab_dir)
                if label_file is not None:
                    used.add(label_file.resolve())
                try:
                    sample = self._sample(rel, image, label_file, names, normals, product)
                except LabelError as exc:
                    where = label_file.relative_to(self.root).as_posix() if label_file else "label file"
                    yield Quarantined(source=self.source_id, path=rel, reason=f"{where} {exc}")
                    continue
                sample.source_split = split
                if split:
                    sample.split = split_name(split)
                else:
                    sample.split, sample.split_origin = self.seeded(seeded_group(self, rel)), "seeded"
                yield sample
            if lab_dir is not None:
                for txt in sorted(p for p in lab_dir.rglob("*.txt") if p.resolve() not in used
                                  and not any(part.startswith(".") or part == "__MACOSX"
                                              for part in p.relative_to(lab_dir).parts)):
                    yield Quarantined(source=self.source_id, path=txt.relative_to(self.root).as_posix(),
                                      reason="label file without image; skipped")

    @staticmethod
    def _label_file(image: Path, img_dir: Path, lab_dir: Path | None) -> Path | None:
        rel = image.relative_to(img_dir).with_suffix(".txt").as_posix()
        for folder, name in ((lab_dir, rel), (image.parent, image.stem + ".txt")):
            if folder is None:
                continue
            found = resolve_ci(folder, name)
            if found is not None and found.is_file():
                return found
        return None

    def _sample(self, rel: str, image: Path, label_file: Path | None, names: dict[int, str],
                normals: set[str], product: str) -> RawSample:
        objects = parse_label_file(label_file.read_text(encoding="utf-8-sig")) if label_file else []
        labels, normal_labels, kept = [], [], []
        for cls, coords in objects:
            if names and cls not in names:
                raise LabelError(f"class id {cls} has no name (names cover 0..{max(names)})")
            name = names.get(cls, str(cls))
            if is_normal(name, normals):
                normal_labels.append(name)
                continue
            labels.append(name)
            kept.append((name, coords))
        if not kept:
            return RawSample(rel_path=rel, product=product, source_split="", label="normal",
                             source_labels=list(dict.fromkeys(normal_labels)))
        polygons = [c for _, c in kept if len(c) > 4]
        labels_of_polygons = [n for n, c in kept if len(c) > 4]
        mask = NormalizedPolygonMask(polygons, labels_of_polygons) if len(polygons) == len(kept) else None
        boxes = []
        size = oriented_size(image)
        if size is not None:
            w, h = size
            for name, c in kept:
                if len(c) == 4:
                    cx, cy, bw, bh = c
                    x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
                else:
                    x0, x1, y0, y1 = min(c[0::2]), max(c[0::2]), min(c[1::2]), max(c[1::2])
                x0, y0, x1, y1 = max(0.0, x0) * w, max(0.0, y0) * h, min(1.0, x1) * w, min(1.0, y1) * h
                if x1 > x0 and y1 > y0:
                    boxes.append((name, round(x0, 3), round(y0, 3), round(x1, 3), round(y1, 3)))
        return RawSample(rel_path=rel, product=product, source_split="", label="defective",
                         source_labels=list(dict.fromkeys(labels)), mask=mask, boxes=boxes)


__all__ = ["NormalizedPolygonMask", "YoloAdapter", "oriented_size", "parse_label_file"]
