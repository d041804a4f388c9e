"""Training augmentation of stage 2: one random view per (seed, step, record), applied identically to the
image, the binary mask and the class mask (so pixels and labels stay registered).

A view is a horizontal flip (probability `hflip`) and a scale jitter: the canvas is resized by a factor drawn
uniformly from [`scale_min`, `scale_max`], then cropped (factor > 1) or padded (factor < 1, black image,
background masks) back to its own size at a random offset; the model's resolution is reached afterwards as
for any record. The image is resampled bilinearly, the masks by nearest neighbour (class indices are never
blended). The view is drawn from `numpy.random.default_rng([seed, step, index])`: no global RNG is touched,
so it is the same in any DataLoader worker, in any process count, and after `--resume`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MODES = ("on", "flip", "off")  # --augment: the preset's flip + scale jitter, flip only, none


@dataclass(frozen=True)
class View:
    flip: bool = False
    scale: float = 1.0
    x: int = 0  # crop (scale > 1) or paste (scale < 1) offset on the resized canvas, in pixels
    y: int = 0

    @property
    def identity(self) -> bool:
        return not self.flip and self.scale == 1.0

    def tag(self) -> str:
        """A short name of the view (part of the feature cache key); '' for the identity."""
        return "" if self.identity else f"f{int(self.flip)}s{self.scale:.6f}x{self.x}y{self.y}"


def settings(cfg: dict, mode: str) -> dict:
    """The augmentation of a preset under `--augment MODE`."""
    if mode not in MODES:
        raise ValueError(f"--augment {mode!r}: choose one of {', '.join(MODES)}")
    hflip = float(cfg.get("hflip", 0.0)) if mode != "off" else 0.0
    lo, hi = (float(cfg.get("scale_min", 1.0)), float(cfg.get("scale_max", 1.0))) if mode == "on" else (1.0, 1.0)
    return {"mode": mode, "hflip": hflip, "scale_min": lo, "scale_max": hi}


def draw_view(aug: dict, seed: int, step: int, index: int, size: tuple[int, int] = (512, 512)) -> View:
    """The view of record `index` at global step `step` (always the same draws, whatever the settings)."""
    rng = np.random.default_rng([int(seed), int(step), int(index), 0xA06])
    u_flip, u_scale, u_x, u_y = rng.random(4)
    flip = bool(u_flip < aug["hflip"])
    lo, hi = aug["scale_min"], aug["scale_max"]
    scale = float(lo + (hi - lo) * u_scale) if hi > lo else float(lo)
    w, h = size
    slack_w, slack_h = abs(round(w * scale) - w), abs(round(h * scale) - h)
    return View(flip, scale, int(u_x * (slack_w + 1)), int(u_y * (slack_h + 1)))


def _transform(image: Image.Image, view: View, resample, fill) -> Image.Image:
    w, h = image.size
    if view.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if view.scale == 1.0:
        return image
    nw, nh = round(w * view.scale), round(h * view.scale)
    image = image.resize((nw, nh), resample)
    if nw >= w and nh >= h:
        return image.crop((view.x, view.y, view.x + w, view.y + h))
    canvas = Image.new(image.mode, (w, h), fill)
    canvas.paste(image, (view.x, view.y))
    return canvas


def apply(record: dict, view: View) -> dict:
    """A copy of the decoded `record` with image, mask and class_mask seen through `view`."""
    if view.identity:
        return record
    out = dict(record)
    out["image"] = _transform(record["image"], view, Image.Resampling.BILINEAR, 0)
    for name in ("mask", "class_mask"):
        if record.get(name) is not None:
            out[name] = _transform(record[name], view, Image.Resampling.NEAREST, 0)
    out.pop("geometry", None)  # the original image's placement no longer holds
    out["augment"] = view.tag()
    return out
