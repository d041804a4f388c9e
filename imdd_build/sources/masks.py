"""Where a sample's defect mask comes from, when it is not simply one image file.

A `MaskSource` is a small picklable description an adapter attaches to a RawSample; the ingest
worker calls `load()` to get the binary mask at the original image size. Every kind has a
`fingerprint()` (what the record depends on) and a `describe()` (what `mask_source_path` says).
Adapter modules may define their own subclasses (module level, so they pickle).
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

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        out = np.zeros((size[1], size[0]), dtype=bool)
        for rel in self.paths:
            try:
                raw = load_mask_array(base / rel, size, max_pixels, binary=False)
            except SampleError as exc:
                raise SampleError(f"mask {rel}: {exc}") from None
            if raw.ndim == 3:
                raw = (raw[..., :-1] if raw.shape[2] in (2, 4) else raw).max(axis=2)
            if self.values:
                out |= np.isin(raw, self.values)
            elif self.half_max:
                top = float(raw.max()) if raw.size else 0.0
                if top > 0:
                    out |= raw >= (top / 2.0 if top > 1 else top)
            else:
                out |= raw > self.threshold
        return out.astype(np.uint8) * 255

    def fingerprint(self, base: Path) -> str:
        try:
            shas = [sha256_file(base / p) for p in self.paths]
        except OSError as exc:
            raise SampleError(f"cannot read mask file: {exc.strerror or exc}") from exc
        return _digest({"files": shas, "threshold": self.threshold, "values": self.values,
                        "half_max": self.half_max})

    def describe(self) -> str | None:
        return ";".join(self.paths) or None


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

    def decode(self) -> np.ndarray:
        h, w = self.shape
        flat = np.zeros(h * w, dtype=bool)
        for rle in self.rles:
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
            flat |= np.cumsum(delta[:-1]) > 0
        return flat.reshape((h, w), order=self.order)

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        return _check_shape(self.decode().astype(np.uint8) * 255, size, "RLE mask")

    def fingerprint(self, base: Path) -> str:
        return _digest({"rle": self.rles, "shape": list(self.shape), "one_based": self.one_based,
                        "order": self.order})


@dataclass
class PolygonMask(MaskSource):
    """Filled polygons (flat [x0, y0, x1, y1, ...] lists in original pixels) and ellipses.

    Ellipses are (cx, cy, semi_axis_a, semi_axis_b, angle_radians): DAGM's original labels.
    """

    polygons: list[list[float]] = field(default_factory=list)
    ellipses: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        im = Image.new("L", size, 0)
        draw = ImageDraw.Draw(im)
        for poly in self.polygons:
            if len(poly) >= 6:
                draw.polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly) - 1, 2)], fill=255)
        mask = np.asarray(im).copy()
        if self.ellipses:
            yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float64)
            for cx, cy, a, b, angle in self.ellipses:
                c, s = np.cos(angle), np.sin(angle)
                u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
                mask[(u / max(a, 1e-6)) ** 2 + (v / max(b, 1e-6)) ** 2 <= 1.0] = 255
        return mask

    def fingerprint(self, base: Path) -> str:
        return _digest({"polygons": self.polygons, "ellipses": [list(e) for e in self.ellipses]})


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


__all__ = ["ArrayMask", "MaskFiles", "MaskSource", "PolygonMask", "RleMask"]
