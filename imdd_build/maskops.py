"""Vectorized mask facts: binarization, boxes from regions, and location/size/shape attributes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .record import Box, DefectAttributes

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_ROWS = ("upper", "center", "lower")
_COLS = ("left", "center", "right")


def binarize(mask: np.ndarray) -> np.ndarray:
    """Any non-zero value is defect (class-index, 0/1 and gray masks alike): 0/255 uint8."""
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def grid_cell_name(row: int, col: int) -> str:
    """Name of a cell of the 3x3 grid: "upper left", "center", "lower right", ..."""
    if row == 1 and col == 1:
        return "center"
    return f"{_ROWS[row]} {_COLS[col]}"


def _grid_index(value: float, start: float, length: float) -> int:
    return min(2, max(0, int((value - start) * 3 // max(length, 1e-9))))


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected defect regions (8-connectivity)."""
    return ndimage.label(mask > 0, structure=_EIGHT_CONNECTED)


def mask_to_boxes(mask: np.ndarray, label: str) -> list[Box]:
    """One box per connected region, in the mask's pixel coordinates (x1, y1 exclusive)."""
    labels, count = label_regions(mask)
    boxes = []
    for sl in ndimage.find_objects(labels)[:count]:
        if sl is None:
            continue
        ys, xs = sl
        boxes.append(Box(label=label, x0=float(xs.start), y0=float(ys.start), x1=float(xs.stop), y1=float(ys.stop)))
    return boxes


def _elongation(ys: np.ndarray, xs: np.ndarray) -> float:
    if len(xs) < 3:
        return 1.0
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    hi, lo = sorted(np.linalg.eigvalsh(cov), reverse=True)
    pixel_var = 1.0 / 12.0  # variance of a one-pixel-wide line across its width
    return float(np.sqrt((hi + pixel_var) / (max(lo, 0.0) + pixel_var)))


def _shape_and_severity(area_fraction: float, regions: int, elongation: float) -> tuple[str, str]:
    if area_fraction >= 0.25:
        shape = "extensive"
    elif regions > 3:
        shape = "scattered"
    elif elongation >= 4.0:
        shape = "elongated"
    else:
        shape = "compact"
    severity = "minor" if area_fraction < 0.005 else "moderate" if area_fraction < 0.05 else "severe"
    return shape, severity


def mask_attributes(mask: np.ndarray, content_box: tuple[int, int, int, int]) -> DefectAttributes:
    """Location (3x3 grid of the visible object), area fraction, region count, elongation of a mask."""
    x0, y0, x1, y1 = content_box
    fg = mask[y0:y1, x0:x1] > 0
    total = fg.size
    ys, xs = np.nonzero(fg)
    if len(xs) == 0:
        return DefectAttributes(basis="mask")
    w, h = x1 - x0, y1 - y0
    cell_ids = np.unique(np.minimum(2, ys * 3 // h) * 3 + np.minimum(2, xs * 3 // w))
    cells = [(int(c) // 3, int(c) % 3) for c in cell_ids]
    labels, count = label_regions(fg)
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    ly, lx = np.nonzero(labels == largest)
    elongation = round(_elongation(ly, lx), 2)
    area_fraction = round(len(xs) / total, 5)
    shape, severity = _shape_and_severity(area_fraction, count, elongation)
    return DefectAttributes(
        location=grid_cell_name(_grid_index(ys.mean(), 0, h), _grid_index(xs.mean(), 0, w)),
        locations=[grid_cell_name(r, c) for r, c in cells],
        area_fraction=area_fraction, regions=int(count), elongation=elongation,
        shape=shape, severity=severity, basis="mask",
    )


def box_attributes(boxes: list[Box], content_box: tuple[int, int, int, int]) -> DefectAttributes:
    """The same attributes approximated from boxes, for sources without masks."""
    if not boxes:
        return DefectAttributes()
    x0, y0, x1, y1 = content_box
    w, h = x1 - x0, y1 - y0
    area = sum((b.x1 - b.x0) * (b.y1 - b.y0) for b in boxes)
    cx = sum((b.x0 + b.x1) / 2 for b in boxes) / len(boxes) - x0
    cy = sum((b.y0 + b.y1) / 2 for b in boxes) / len(boxes) - y0
    cells = sorted({(_grid_index((b.y0 + b.y1) / 2 - y0, 0, h), _grid_index((b.x0 + b.x1) / 2 - x0, 0, w))
                    for b in boxes})
    elongation = max(max(b.x1 - b.x0, b.y1 - b.y0) / max(min(b.x1 - b.x0, b.y1 - b.y0), 1.0) for b in boxes)
    area_fraction = round(min(1.0, area / (w * h)), 5)
    shape, severity = _shape_and_severity(area_fraction, len(boxes), elongation)
    return DefectAttributes(
        location=grid_cell_name(_grid_index(cy, 0, h), _grid_index(cx, 0, w)),
        locations=[grid_cell_name(r, c) for r, c in cells], area_fraction=area_fraction,
        regions=len(boxes), elongation=round(elongation, 2), shape=shape, severity=severity, basis="boxes",
    )
