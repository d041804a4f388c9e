"""The canvases ("views") one sample becomes, and the labels each view can honestly claim.

A sample is one view (letterbox, stretch, crop) or, in tile mode, one view per window of a strip.
Invariant for every mode: a stored view never claims a defect its stored pixels do not contain.

* crop: the centred square moves the least that keeps the annotated region (mask pixels and boxes)
  inside; when the region does not fit a square, the sample is letterboxed instead
  (`resize_note` "crop_shifted" / "crop_fallback_letterbox").
* tile: each window takes its own label from its own mask/boxes (no defect pixel: normal); a
  defective sample with nothing that localizes the defect cannot say which window holds it, so it
  is letterboxed ("tile_fallback_letterbox").
* any mode: a defect thinner than a canvas pixel can fall between the nearest-neighbour samples of a
  downscale; its pixels are then marked where they land ("defect_kept"), rather than storing an
  empty mask on a defective record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .geometry import canvas_geometry
from .maskops import label_regions, mask_to_boxes
from .normalize import NormalizeOptions, class_mask_to_canvas, mask_to_canvas, plan_geometries
from .record import Box, Geometry


@dataclass
class OriginalLabels:
    """What localizes a sample's defects in original pixels: the binary mask (0/255), the class index
    mask when the source separates classes (values index `class_names`, 1-based), and raw boxes."""

    mask: np.ndarray | None
    index: np.ndarray | None
    class_names: list[str]
    boxes: list[tuple]

    def region(self) -> tuple[float, float, float, float] | None:
        """The bounding box (original pixels) of every mask pixel and box; None when nothing."""
        xs0, ys0, xs1, ys1 = [], [], [], []
        if self.mask is not None and self.mask.any():
            ys, xs = np.nonzero(self.mask)
            xs0.append(xs.min()), ys0.append(ys.min()), xs1.append(xs.max() + 1), ys1.append(ys.max() + 1)
        for _label, x0, y0, x1, y1 in self.boxes:
            xs0.append(min(x0, x1)), ys0.append(min(y0, y1)), xs1.append(max(x0, x1)), ys1.append(max(y0, y1))
        if not xs0:
            return None
        return float(min(xs0)), float(min(ys0)), float(max(xs1)), float(max(ys1))


def plan_views(width: int, height: int, options: NormalizeOptions, labels: OriginalLabels,
               defective: bool) -> tuple[list[Geometry], str | None]:
    """The geometries of one sample and the note saying what changed from the requested mode."""
    mode = options.resize_mode
    if mode == "crop":
        region = labels.region() if defective else None
        centred = canvas_geometry(width, height, "crop", options.size)
        if region is None:
            return [centred], None
        kept = canvas_geometry(width, height, "crop", options.size, keep=region)
        if kept is None:
            return [canvas_geometry(width, height, "letterbox", options.size)], "crop_fallback_letterbox"
        return [kept], (None if kept == centred else "crop_shifted")
    geometries = plan_geometries(width, height, options)
    if mode == "tile" and len(geometries) > 1 and defective and labels.region() is None:
        return [canvas_geometry(width, height, "letterbox", options.size)], "tile_fallback_letterbox"
    return geometries, None


def keep_visible(original: np.ndarray, canvas: np.ndarray, geometry: Geometry, value=255) -> bool:
    """Mark on `canvas` where the original defect pixels inside the view land, if nearest-neighbour
    sampling dropped them all; returns whether it had to. `original` may be binary or class-indexed."""
    if canvas.any():
        return False
    x0, y0, x1, y1 = geometry.crop_box
    ys, xs = np.nonzero(original)
    inside = (xs >= np.floor(x0)) & (xs < np.ceil(x1)) & (ys >= np.floor(y0)) & (ys < np.ceil(y1))
    if not inside.any():
        return False
    ys, xs = ys[inside], xs[inside]
    cx0, cy0, cx1, cy1 = geometry.content_box
    cx = np.clip(np.floor((xs + 0.5) * geometry.scale_x + geometry.offset_x), cx0, cx1 - 1).astype(np.int64)
    cy = np.clip(np.floor((ys + 0.5) * geometry.scale_y + geometry.offset_y), cy0, cy1 - 1).astype(np.int64)
    canvas[cy, cx] = original[ys, xs] if value is None else value
    return True


@dataclass
class CanvasLabels:
    mask: np.ndarray | None
    class_mask: np.ndarray | None  # values: 1 + index into `defect_types`
    defect_types: list[str]
    kept: bool  # keep_visible had to mark a thin defect


def canvas_labels(labels: OriginalLabels, geometry: Geometry, class_types: list[str] | None,
                  defect_types: list[str]) -> CanvasLabels:
    """The view's binary and class masks.

    `class_types[i]` is the defect type of source class i + 1 (None: the source has no per-pixel
    classes); the class mask is then re-indexed into `defect_types` (`1 + index`). Without source
    classes a single-type record's class mask is its binary mask times 1; with several types and
    no per-pixel classes there is no class mask.
    """
    if labels.mask is None:
        return CanvasLabels(None, None, defect_types, False)
    mask = mask_to_canvas(labels.mask, geometry)
    kept = keep_visible(labels.mask, mask, geometry)
    if labels.index is not None and class_types is not None:
        lut = np.zeros(256, dtype=np.uint8)
        for i, t in enumerate(class_types, start=1):
            lut[i] = defect_types.index(t) + 1
        index = class_mask_to_canvas(labels.index, geometry)
        keep_visible(labels.index, index, geometry, value=None)
        return CanvasLabels(mask, lut[index], defect_types, kept)
    if len(defect_types) <= 1:
        return CanvasLabels(mask, (mask > 0).astype(np.uint8), defect_types, kept)
    return CanvasLabels(mask, None, defect_types, kept)


def retype(labels: CanvasLabels, boxes: list[Box]) -> CanvasLabels:
    """A tile keeps only the defect types its own pixels or boxes show, the class mask re-indexed."""
    if labels.class_mask is None and not boxes:
        present = labels.defect_types if labels.mask is not None and labels.mask.any() else []
    else:
        ks = set(np.unique(labels.class_mask).tolist()) - {0} if labels.class_mask is not None else set()
        shown = {labels.defect_types[k - 1] for k in ks} | {b.label for b in boxes}
        present = [t for t in labels.defect_types if t in shown] + sorted(shown - set(labels.defect_types))
    class_mask = labels.class_mask
    if class_mask is not None:
        lut = np.zeros(256, dtype=np.uint8)
        for i, t in enumerate(labels.defect_types, start=1):
            lut[i] = present.index(t) + 1 if t in present else 0
        class_mask = lut[class_mask]
    return CanvasLabels(labels.mask, class_mask, present, labels.kept)


def class_boxes(class_mask: np.ndarray, defect_types: list[str]) -> list[Box]:
    """One box per connected region of each class, labelled with its defect type."""
    return [box for k, t in enumerate(defect_types, start=1) for box in mask_to_boxes(class_mask == k, t)]


def instances(class_mask: np.ndarray | None, defect_types: list[str], boxes: list[Box]) -> dict[str, int]:
    """Defect type -> instances: connected regions of that class in the class mask, else boxes."""
    if class_mask is not None and class_mask.any():
        return {t: int(label_regions(class_mask == k)[1]) for k, t in enumerate(defect_types, start=1)
                if (class_mask == k).any()}
    return dict(sorted(Counter(b.label for b in boxes).items()))
