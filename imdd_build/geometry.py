"""Where an original image lands on the 512x512 canvas, and how to map pixels back."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .record import Box, Geometry


def canvas_geometry(width: int, height: int, mode: str = "letterbox", size: int = 512) -> Geometry:
    """Geometry for `mode`: letterbox keeps aspect and pads, stretch ignores it, crop fills and trims."""
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
        scale = size / min(width, height)
        crop_w, crop_h = size / scale, size / scale  # the centred square of the original that is kept
        x0, y0 = (width - crop_w) / 2, (height - crop_h) / 2
        return Geometry(
            resize_mode="crop", size=size, scale_x=scale, scale_y=scale, offset_x=-x0 * scale,
            offset_y=-y0 * scale, crop_box=(x0, y0, x0 + crop_w, y0 + crop_h), content_box=(0, 0, size, size),
        )
    raise ValueError(f"unknown resize mode {mode!r} (letterbox, stretch or crop)")


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
