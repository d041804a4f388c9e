"""Per-class IoU and mIoU of predicted class maps against the records' class ground truth.

Ground truth of a record: its `class_mask` (0 background, k = 1 + index into its `defect_types`), or its
`mask` when it has exactly one defect type (mask > 127 is that type); normal records of sources whose defective
records have pixel ground truth are all background. A defective record with neither (no mask, or a binary mask
shared by several types) has no class ground truth and is counted, not scored. Prediction: the line's
`class_map` (0 background, i = the i-th of its `class_names`). Only pixels inside `geometry.content_box` count
(the letterbox padding is not the image).

One confusion matrix over the names (background first) is accumulated over every scored image; the IoU of a
class is TP / (TP + FP + FN) from it, so a class is judged over the whole split, not averaged per image. `miou`
is the mean over the defect classes present in the ground truth (background is reported apart as
`background_iou`: it is ~1 for any model and would flatter the mean); a predicted name that is no ground-truth
class of the split scores no IoU of its own, but its pixels are false negatives of the true class.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image

from imdd_build.errors import RunError

from .predictions import load_class_map


def _class_mask_array(item) -> np.ndarray:
    image = Image.open(io.BytesIO(item.class_mask_bytes))
    if image.mode not in ("L", "P"):
        image = image.convert("L")
    return np.asarray(image, dtype=np.uint8)


def truth_names(item, mask_sources: set[str]) -> tuple[np.ndarray, list[str]] | None:
    """(index array, names of indices 1..) of the record's class ground truth, or None when it has none."""
    if item.class_mask_bytes is not None:
        array = _class_mask_array(item)
        top = int(array.max())
        if top > len(item.defect_types):
            raise RunError(f"{item.key}: class_mask has index {top} but the record has {len(item.defect_types)} "
                           f"defect type(s)")
        return array, list(item.defect_types)
    if item.mask_bytes is not None and len(item.defect_types) == 1:
        mask = np.asarray(Image.open(io.BytesIO(item.mask_bytes)).convert("L")) > 127
        return mask.astype(np.uint8), list(item.defect_types)
    if item.label == "normal" and item.source in mask_sources:
        return np.zeros((512, 512), np.uint8), []
    return None


def _crop(array: np.ndarray, content_box) -> np.ndarray:
    if content_box is None:
        return array
    x0, y0, x1, y1 = (int(round(v)) for v in content_box)
    return array[y0:y1, x0:x1]


def class_iou(items: Iterable, folder, mask_sources: set[str]) -> dict:
    """{"miou", "per_class_iou", "background_iou", "counts"} over `items` (scoring.Item)."""
    scored: list[tuple[np.ndarray, list[str], object]] = []
    no_truth = no_prediction = 0
    names: set[str] = set()
    for it in items:
        truth = truth_names(it, mask_sources)
        if truth is None:
            no_truth += 1
            continue
        if it.pred is None or it.pred.class_map is None:
            no_prediction += 1
            continue
        scored.append((truth[0], truth[1], it))
        names.update(truth[1])
        names.update(it.pred.class_names or [])
    order = ["background", *sorted(names - {"background"})]
    index = {n: i for i, n in enumerate(order)}
    k = len(order)
    confusion = np.zeros((k, k), dtype=np.int64)
    pixels = 0
    for gt, gt_names, it in scored:
        pred = load_class_map(folder, it.pred)
        gt_lut = np.array([0, *(index[n] for n in gt_names)], dtype=np.int64)
        pred_lut = np.array([0, *(index[n] for n in it.pred.class_names)], dtype=np.int64)
        g = gt_lut[_crop(gt, it.content_box).ravel()]
        p = pred_lut[_crop(pred, it.content_box).ravel()]
        confusion += np.bincount(g * k + p, minlength=k * k).reshape(k, k)
        pixels += g.size
    tp = np.diag(confusion)
    truth_px, pred_px = confusion.sum(1), confusion.sum(0)
    union = truth_px + pred_px - tp
    per_class = {order[c]: float(tp[c] / union[c]) for c in range(1, k) if truth_px[c] > 0}
    background = float(tp[0] / union[0]) if k and truth_px[0] > 0 else None
    return {"miou": mean_iou(per_class, None), "per_class_iou": per_class, "background_iou": background,
            "counts": {"images": len(scored), "pixels": int(pixels), "classes": len(per_class),
                       "no_prediction": no_prediction, "no_class_truth": no_truth}}


def mean_iou(per_class: dict[str, float], classes: set[str] | None) -> float | None:
    """The mean IoU over the ground-truth classes in `classes` (all with None); None when there is none."""
    values = [v for name, v in per_class.items() if classes is None or name in classes]
    return float(np.mean(values)) if values else None
