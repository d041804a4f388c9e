"""Where a sample's defect mask comes from, when it is not simply one image file.

A `MaskSource` is a small picklable description an adapter attaches to a RawSample; the ingest
worker calls `load()` to get the binary mask at the original image size. Every kind has a
`fingerprint()` (what the record depends on) and a `describe()` (what `mask_source_path` says).
Adapter modules may define their own subclasses (module level, so they pickle).

Where the source says which region is which defect class, `load_classes()` also gives a class
index mask (0 background, k = 1 + index into the names it returns), non-zero exactly where
`load()` is; ingest maps the names to the record's `defect_types` (`Record.class_mask`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..maskops import binarize
from ..normalize import SampleError, load_mask_array
from ..store import sha256_file


class MaskSource:
    """Base class: `load(base, (w, h), max_pixels)` -> uint8 array (h, w) with 0/255."""

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        raise NotImplementedError

    def fingerprint(self, base: Path) -> str:
        raise NotImplementedError

    def describe(self) -> str | None:
        return None

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        """(index mask uint8 (h, w), class names) where the source separates classes per pixel, else None."""
        return None


ClassLayers = list[tuple[str, np.ndarray]]  # (source class name, boolean region) in drawing order


def stack_classes(layers: ClassLayers, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Named boolean layers -> (index mask, names); a later layer wins where two overlap.

    The index mask is non-zero exactly where any layer is, so it agrees with the layers' union."""
    layers = [(name, region) for name, region in layers if region.any()]  # a class with no pixel is no class here
    names = list(dict.fromkeys(name for name, _ in layers))
    if len(names) > 255:
        raise SampleError(f"{len(names)} defect classes in one image; a class mask holds at most 255")
    index = np.zeros(shape, dtype=np.uint8)
    for name, region in layers:
        index[region] = names.index(name) + 1
    return index, names


def _labels_of(labels: list[str] | None, count: int, what: str) -> list[str] | None:
    if labels is not None and len(labels) != count:
        raise SampleError(f"{len(labels)} class labels for {count} {what}")
    return labels


def _check_shape(mask: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    if mask.shape != (size[1], size[0]):
        raise SampleError(f"{what} is {mask.shape[1]}x{mask.shape[0]}, image is {size[0]}x{size[1]}")
    return mask


@dataclass
class MaskFiles(MaskSource):
    """The union of one or more mask image files (root-relative paths).

    A pixel is defect when its value is > `threshold` (0 for clean 0/255, 0/1 or class-index masks;
    127 for masks stored as JPEG). `values`, when given, counts only those gray values. `half_max`
    binarises each file at half its own maximum instead (0/1, 0/255 and anti-aliased masks alike;
    an all-zero file adds nothing). Colour masks use their brightest channel, alpha left out.
    """

    paths: list[str]
    threshold: int = 0
    values: list[int] | None = None
    half_max: bool = False
    labels: list[str] | None = None  # the defect class of each file (one file per class or instance)

    def _file(self, base: Path, rel: str, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        try:
            raw = load_mask_array(base / rel, size, max_pixels, binary=False)
        except SampleError as exc:
            raise SampleError(f"mask {rel}: {exc}") from None
        if raw.ndim == 3:
            raw = (raw[..., :-1] if raw.shape[2] in (2, 4) else raw).max(axis=2)
        if self.values:
            return np.isin(raw, self.values)
        if self.half_max:
            top = float(raw.max()) if raw.size else 0.0
            return raw >= (top / 2.0 if top > 1 else top) if top > 0 else np.zeros(raw.shape, dtype=bool)
        return raw > self.threshold

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        out = np.zeros((size[1], size[0]), dtype=bool)
        for rel in self.paths:
            out |= self._file(base, rel, size, max_pixels)
        return out.astype(np.uint8) * 255

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        labels = _labels_of(self.labels, len(self.paths), "mask files")
        if labels is None:
            return None
        layers = [(label, self._file(base, rel, size, max_pixels)) for label, rel in zip(labels, self.paths)]
        return stack_classes(layers, (size[1], size[0]))

    def fingerprint(self, base: Path) -> str:
        try:
            shas = [sha256_file(base / p) for p in self.paths]
        except OSError as exc:
            raise SampleError(f"cannot read mask file: {exc.strerror or exc}") from exc
        return _digest({"files": shas, "threshold": self.threshold, "values": self.values,
                        "half_max": self.half_max, **({"labels": self.labels} if self.labels else {})})

    def describe(self) -> str | None:
        return ";".join(self.paths) or None


@dataclass
class ClassIndexMask(MaskSource):
    """One mask file whose pixel values are class indices (VisA, VOC SegmentationClass): value v is
    the class `names[v]`; any value in `values` (default: every non-zero) is defect, others are not.
    A value with no name is named `fallback` (or "class_<v>")."""

    path: str
    names: dict[int, str] = field(default_factory=dict)
    values: list[int] | None = None
    fallback: str | None = None

    def _raw(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            raw = load_mask_array(base / self.path, size, max_pixels, binary=False)
        except SampleError as exc:
            raise SampleError(f"mask {self.path}: {exc}") from None
        if raw.ndim == 3:
            raw = (raw[..., :-1] if raw.shape[2] in (2, 4) else raw).max(axis=2)
        return raw, (np.isin(raw, self.values) if self.values else raw > 0)

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        return self._raw(base, size, max_pixels)[1].astype(np.uint8) * 255

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        raw, defect = self._raw(base, size, max_pixels)
        layers = [(self.names.get(int(v)) or self.fallback or f"class_{int(v)}", defect & (raw == v))
                  for v in np.unique(raw[defect])]
        return stack_classes(layers, raw.shape)

    def fingerprint(self, base: Path) -> str:
        try:
            sha = sha256_file(base / self.path)
        except OSError as exc:
            raise SampleError(f"cannot read mask file: {exc.strerror or exc}") from exc
        return _digest({"file": sha, "names": {str(k): v for k, v in sorted(self.names.items())},
                        "values": self.values, "fallback": self.fallback})

    def describe(self) -> str | None:
        return self.path


@dataclass
class ArrayMask(MaskSource):
    """A mask already in memory (rendered maps, decoded annotations): any non-zero is defect."""

    array: np.ndarray

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        return _check_shape(binarize(np.asarray(self.array)), size, "mask array")

    def fingerprint(self, base: Path) -> str:
        a = np.ascontiguousarray(self.array)
        return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


@dataclass
class RleMask(MaskSource):
    """Run-length encoded masks in "start length start length ..." strings (one per class, OR-ed).

    `one_based`: the first pixel is 1 (Kaggle, Severstal). `order`: "F" = column-major (pixels
    numbered top to bottom, then left to right), "C" = row-major. `shape` is (height, width).
    """

    rles: list[str]
    shape: tuple[int, int]
    one_based: bool = True
    order: str = "F"
    labels: list[str] | None = None  # the defect class of each RLE

    def decode(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        for rle in self.rles:
            out |= self._decode_one(rle)
        return out

    def _decode_one(self, rle: str) -> np.ndarray:
        h, w = self.shape
        nums = np.array(rle.split(), dtype=np.int64)
        if nums.size % 2:
            raise SampleError(f"RLE has an odd number of values ({nums.size})")
        starts, lengths = nums[0::2] - (1 if self.one_based else 0), nums[1::2]
        if nums.size and (starts.min() < 0 or (starts + lengths).max() > h * w or lengths.min() < 0):
            raise SampleError(f"RLE run outside the {w}x{h} image")
        # Vectorized run fill: +1 at each start, -1 at each end, cumulative sum > 0.
        delta = np.zeros(h * w + 1, dtype=np.int32)
        np.add.at(delta, starts, 1)
        np.add.at(delta, starts + lengths, -1)
        flat = np.cumsum(delta[:-1]) > 0
        return flat.reshape((h, w), order=self.order)

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        return _check_shape(self.decode().astype(np.uint8) * 255, size, "RLE mask")

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        labels = _labels_of(self.labels, len(self.rles), "RLE masks")
        if labels is None:
            return None
        _check_shape(np.empty(self.shape, dtype=bool), size, "RLE mask")
        return stack_classes([(label, self._decode_one(rle)) for label, rle in zip(labels, self.rles)], self.shape)

    def fingerprint(self, base: Path) -> str:
        return _digest({"rle": self.rles, "shape": list(self.shape), "one_based": self.one_based,
                        "order": self.order, **({"labels": self.labels} if self.labels else {})})


@dataclass
class PolygonMask(MaskSource):
    """Filled polygons (flat [x0, y0, x1, y1, ...] lists in original pixels) and ellipses.

    Ellipses are (cx, cy, semi_axis_a, semi_axis_b, angle_radians): DAGM's original labels.
    """

    polygons: list[list[float]] = field(default_factory=list)
    ellipses: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    labels: list[str] | None = None  # the defect class of each polygon (polygon-only masks)

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        mask = np.asarray(draw_polygons(self.polygons, size)).copy()
        if self.ellipses:
            yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float64)
            for cx, cy, a, b, angle in self.ellipses:
                c, s = np.cos(angle), np.sin(angle)
                u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
                mask[(u / max(a, 1e-6)) ** 2 + (v / max(b, 1e-6)) ** 2 <= 1.0] = 255
        return mask

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        labels = _labels_of(self.labels, len(self.polygons), "polygons")
        if labels is None or self.ellipses:
            return None
        return stack_classes(polygon_layers(labels, self.polygons, size), (size[1], size[0]))

    def fingerprint(self, base: Path) -> str:
        return _digest({"polygons": self.polygons, "ellipses": [list(e) for e in self.ellipses],
                        **({"labels": self.labels} if self.labels else {})})


def draw_polygons(polygons: list[list[float]], size: tuple[int, int]) -> Image.Image:
    """Filled flat [x0, y0, x1, y1, ...] polygons (original pixels) as a 0/255 L image of `size`."""
    im = Image.new("L", size, 0)
    draw = ImageDraw.Draw(im)
    for poly in polygons:
        if len(poly) >= 6:
            draw.polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly) - 1, 2)], fill=255)
    return im


def polygon_layers(labels: list[str], polygons: list[list[float]], size: tuple[int, int]) -> ClassLayers:
    """One boolean layer per labelled polygon, drawn exactly as `draw_polygons` draws it."""
    return [(label, np.asarray(draw_polygons([poly], size)) > 0) for label, poly in zip(labels, polygons)]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


__all__ = ["ArrayMask", "ClassIndexMask", "ClassLayers", "MaskFiles", "MaskSource", "PolygonMask", "RleMask",
           "draw_polygons", "polygon_layers", "stack_classes"]
