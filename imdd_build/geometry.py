"""Where an original image lands on the 512x512 canvas, and how to map pixels back."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .record import Box, Geometry


def canvas_geometry(width: int, height: int, mode: str = "letterbox", size: int = 512,
                    keep: tuple[float, float, float, float] | None = None) -> Geometry | None:
    """Geometry for `mode`: letterbox keeps aspect and pads, stretch ignores it, crop fills and trims.

    `keep` (crop only): an original-pixel region (x0, y0, x1, y1) the crop must contain; the square
    window moves from the centre just enough to hold it, and None comes back when it cannot.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid image size {width}x{height}")
    if mode == "stretch":
        return Geometry(
            resize_mode="stretch", size=size, scale_x=size / width, scale_y=size / height,
            offset_x=0.0, offset_y=0.0, crop_box=(0.0, 0.0, float(width), float(height)),
            content_box=(0, 0, size, size),
        )
    if mode == "letterbox":
        scale = size / max(width, height)
        new_w = max(1, min(size, round(width * scale)))
        new_h = max(1, min(size, round(height * scale)))
        off_x, off_y = (size - new_w) // 2, (size - new_h) // 2
        return Geometry(
            resize_mode="letterbox", size=size, scale_x=new_w / width, scale_y=new_h / height,
            offset_x=float(off_x), offset_y=float(off_y), crop_box=(0.0, 0.0, float(width), float(height)),
            content_box=(off_x, off_y, off_x + new_w, off_y + new_h),
        )
    if mode == "crop":
        side = min(width, height)  # the kept square, in original pixels (exact: no size/scale round trip)
        x0, y0 = (width - side) / 2, (height - side) / 2
        if keep is not None:
            x0 = _window_start(x0, side, width, keep[0], keep[2])
            y0 = _window_start(y0, side, height, keep[1], keep[3])
            if x0 is None or y0 is None:
                return None
        return square_window(x0, y0, side, size, "crop")
    raise ValueError(f"unknown resize mode {mode!r} (letterbox, stretch, crop or tile)")


def _window_start(start: float, side: int, length: int, lo: float, hi: float) -> float | None:
    """Move a window [start, start+side) of [0, length) the least so that it holds [lo, hi)."""
    lo, hi = max(0, math.floor(lo)), min(length, math.ceil(hi))
    if hi - lo > side:
        return None
    if lo < start:
        return float(lo)
    if hi > start + side:
        return float(hi - side)
    return start


def square_window(x0: float, y0: float, side: float, size: int = 512, mode: str = "crop") -> Geometry:
    """The square `side`x`side` of the original at (x0, y0), scaled to fill the canvas."""
    scale = size / side
    return Geometry(
        resize_mode=mode, size=size, scale_x=scale, scale_y=scale, offset_x=-x0 * scale, offset_y=-y0 * scale,
        crop_box=(float(x0), float(y0), float(x0) + side, float(y0) + side), content_box=(0, 0, size, size),
    )


def is_strip(width: int, height: int, aspect: float) -> bool:
    """Is the image elongated enough to be tiled (long side / short side above `aspect`)?"""
    return max(width, height) > aspect * min(width, height)


def tile_starts(length: int, side: int, overlap: float) -> list[int]:
    """Integer starts of square windows of `side` covering [0, length), neighbours sharing at least
    `overlap` of a window, spread evenly from the first edge to the last."""
    if not 0 <= overlap < 1:
        raise ValueError(f"tile overlap must be in [0, 1), not {overlap}")
    if length <= side:
        return [0]
    stride = max(1.0, side * (1 - overlap))
    n = math.ceil((length - side) / stride) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def tile_geometries(width: int, height: int, size: int = 512, aspect: float = 2.0,
                    overlap: float = 0.25) -> list[Geometry]:
    """Overlapping square windows of the short side along the long side of a strip; one letterbox
    geometry for an image that is not a strip. Integer window positions, so `mask_to_original` of
    every window puts the original pixels back exactly where the windows upscale."""
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid image size {width}x{height}")
    if not is_strip(width, height, aspect):
        return [canvas_geometry(width, height, "letterbox", size)]
    side = min(width, height)
    if width >= height:
        return [square_window(x, 0, side, size, "tile") for x in tile_starts(width, side, overlap)]
    return [square_window(0, y, side, size, "tile") for y in tile_starts(height, side, overlap)]


def source_box(geometry: Geometry, orig_w: int, orig_h: int, im_w: int, im_h: int) -> tuple[float, float, float, float]:
    """The crop box in the pixels of a decode of size `im_w`x`im_h` (a reduced JPEG decode may be
    smaller than the original), clamped to the image: float error must never reach PIL as a box
    a hair outside the image ("box offset can't be negative")."""
    fx, fy = im_w / orig_w, im_h / orig_h
    x0, y0, x1, y1 = geometry.crop_box
    bx0, by0 = min(max(0.0, x0 * fx), im_w), min(max(0.0, y0 * fy), im_h)
    bx1, by1 = min(max(bx0, x1 * fx), im_w), min(max(by0, y1 * fy), im_h)
    return bx0, by0, bx1, by1


def transform_box(geometry: Geometry, label: str, x0: float, y0: float, x1: float, y1: float) -> Box | None:
    """An original-pixel box on the canvas, clipped to the content; None when nothing of it is visible."""
    cx0, cy0, cx1, cy1 = geometry.content_box
    ax, ay = geometry.to_canvas(x0, y0)
    bx, by = geometry.to_canvas(x1, y1)
    ax, bx = max(cx0, min(ax, bx)), min(cx1, max(ax, bx))
    ay, by = max(cy0, min(ay, by)), min(cy1, max(ay, by))
    if bx - ax <= 0 or by - ay <= 0:
        return None
    return Box(label=label, x0=round(ax, 2), y0=round(ay, 2), x1=round(bx, 2), y1=round(by, 2))


def mask_to_original(mask: np.ndarray, geometry: Geometry, width: int, height: int) -> np.ndarray:
    """Map a 512x512 mask back to the original `width`x`height` (nearest neighbour; outside the crop = 0)."""
    cx0, cy0, cx1, cy1 = geometry.content_box
    content = Image.fromarray(np.ascontiguousarray(mask[cy0:cy1, cx0:cx1]))
    ox0, oy0, ox1, oy1 = geometry.crop_box
    ix0, iy0 = max(0, round(ox0)), max(0, round(oy0))
    ix1, iy1 = min(width, round(ox1)), min(height, round(oy1))
    out = np.zeros((height, width), dtype=mask.dtype)
    out[iy0:iy1, ix0:ix1] = np.asarray(content.resize((ix1 - ix0, iy1 - iy0), Image.NEAREST))
    return out
