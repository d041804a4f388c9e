"""Training targets of one record: one segment per connected region of each (base) defect class.

Per-class masks come from the record's `class_mask` (0 background, i = 1 + index into `defect_types`) when
it has one, else from the binary `mask` when the record has exactly one defect type. A record with boxes or
only image labels gets class labels (for the image-level and grounding losses) and no masks: never a mask
made up from a box. A normal record (`label == "normal"`) is a real all-background target.

Open vocabulary: the pixels of defect types outside the trained set are the target's `ignore` region, which
the losses leave out entirely (losses.py): they are neither background nor a "no-object" query, so the model
is never taught that an unseen defect is not a defect. (A record whose every defect is unseen is not a
training sample at all: dataset.py leaves it out.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from imdd_build.maskops import label_regions

from .vocabulary import caption_terms


@dataclass
class Target:
    """`masks` (N, R, R) float in [0, 1] with `classes` (N,) indices into the trained classes, or None when
    the record has no pixel annotation; `labels` the trained classes it carries; `terms` its caption's types."""

    key: str
    classes: list[int] = field(default_factory=list)
    masks: np.ndarray | None = None
    labels: list[int] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    normal: bool = False
    ignore: np.ndarray | None = None  # (R, R) float: > 0 where an unseen defect type lies (no loss there)

    @property
    def has_pixels(self) -> bool:
        return self.masks is not None


def class_mask_array(record: dict) -> np.ndarray | None:
    """The record's per-class mask as (H, W) uint8, whatever form the reader left it in; None if absent."""
    value = record.get("class_mask")
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray)):
        if not value:
            return None
        value = Image.open(io.BytesIO(value))
    if isinstance(value, Image.Image):
        value = np.asarray(value if value.mode in ("L", "P", "I;16", "I") else value.convert("L"))
    arr = np.asarray(value)
    return arr[..., 0] if arr.ndim == 3 else arr


def _segments(binary: np.ndarray, resolution: int, max_segments: int) -> list[np.ndarray]:
    """Connected regions (8-connected), largest first, each area-resampled to resolution x resolution."""
    labels, count = label_regions(binary)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")[:max_segments]
    out = []
    for idx in order:
        region = Image.fromarray(((labels == idx + 1) * 255).astype(np.uint8), "L")
        if region.size != (resolution, resolution):
            region = region.resize((resolution, resolution), Image.Resampling.BOX)
        out.append(np.asarray(region, dtype=np.float32) / 255.0)
    return out


def build_target(record: dict, class_index: dict[str, int], resolution: int, max_segments: int) -> Target:
    """The target of a decoded record (see the module docstring)."""
    types = list(record.get("defect_types") or [])
    target = Target(key=record.get("key", "?"), normal=record.get("label") == "normal" and not types)
    target.labels = sorted({class_index[t] for t in types if t in class_index})
    target.terms = [t.type for t in caption_terms(record.get("caption") or "") if t.type in class_index]
    per_class: list[tuple[int, np.ndarray]] = []
    unseen: np.ndarray | None = None
    # WebDataset shards carry an all-zero mask where a record has none: the has_* flags say which is real.
    cmask = class_mask_array(record) if record.get("has_class_mask", True) is not False else None
    mask = record.get("mask") if record.get("has_mask", True) is not False else None
    if cmask is not None and cmask.any():
        for i, t in enumerate(types):
            if t in class_index:
                per_class.append((class_index[t], cmask == i + 1))
        known = [i + 1 for i, t in enumerate(types) if t in class_index]
        unseen = (cmask > 0) & ~np.isin(cmask, known)  # unseen types, and class ids beyond the type list
        has_pixels = True
    elif mask is not None and len(types) == 1:
        binary = np.asarray(mask.convert("L")) > 0
        if types[0] in class_index:
            per_class.append((class_index[types[0]], binary))
        else:
            unseen = binary
        has_pixels = True
    else:
        has_pixels = target.normal
    if not has_pixels:
        return target
    masks, classes = [], []
    for cls, binary in per_class:
        for seg in _segments(binary, resolution, max_segments):
            masks.append(seg)
            classes.append(cls)
    if len(masks) > max_segments:  # more regions than queries: keep the largest
        keep = np.argsort([-m.sum() for m in masks], kind="stable")[:max_segments]
        masks, classes = [masks[i] for i in keep], [classes[i] for i in keep]
    target.masks = np.stack(masks) if masks else np.zeros((0, resolution, resolution), np.float32)
    target.classes = classes
    if unseen is not None and unseen.any():
        region = Image.fromarray((unseen * 255).astype(np.uint8), "L")
        if region.size != (resolution, resolution):
            region = region.resize((resolution, resolution), Image.Resampling.BOX)
        target.ignore = np.asarray(region, dtype=np.float32) / 255.0
    return target
