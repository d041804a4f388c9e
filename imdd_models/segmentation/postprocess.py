"""Model outputs -> what a person and the evaluation read: per-class maps, masks, boxes, scores.

Mask2Former's semantic inference, kept in [0, 1] without saturating: per query, the class probability
(softmax over the K names + no-object, no-object dropped) times its sigmoid mask (upsampled to the 512x512
canvas) is the chance that the query marks the pixel as that class; the class map is the chance that any
query does (noisy-OR, 1 - prod_q (1 - p_qk m_q)). A single confident query gives p m as Mask2Former's sum;
the plain sum clipped to [0, 1] tied every pixel where several queries overlapped at 1.0 (an untrained
16-query head: the whole canvas), which left pixel AUROC without a ranking there. The anomaly map is the
per-pixel maximum over classes; a class's image score is its map's maximum, the image score the maximum over
classes. A class's mask is its map at or above the threshold where it is the top class; boxes are that mask's
connected regions (8-connected), scored by the map's maximum inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from imdd_build.maskops import label_regions
from imdd_build.record import Geometry


@dataclass
class ImageResult:
    class_maps: np.ndarray  # (K, S, S) float32 in [0, 1]
    anomaly_map: np.ndarray  # (S, S) float32
    class_index_map: np.ndarray  # (S, S) uint8: 0 background, i = 1 + class index
    class_scores: dict[str, float]
    image_score: float
    label: str
    defect_type: str | None
    boxes: list[dict]


def semantic_maps(masks: torch.Tensor, logits: torch.Tensor, size: int) -> torch.Tensor:
    """(B, Q, h, w) mask logits and (B, Q, K+1) class logits -> (B, K, size, size) maps in [0, 1]."""
    return semantic_maps_from_probs(masks, logits.float().softmax(-1), size)


def _noisy_or(masks: torch.Tensor, probs: torch.Tensor, size: int) -> torch.Tensor:
    """1 - prod_q (1 - probs[b, q, k] * sigmoid(up(masks[b, q]))), one query at a time (memory of one map)."""
    log_none = None
    for q in range(masks.shape[1]):
        up = F.interpolate(masks[:, q:q + 1].float(), size=(size, size), mode="bilinear",
                           align_corners=False).sigmoid()
        term = torch.log1p(-(probs[:, q, :, None, None] * up).clamp(max=1 - 1e-7))
        log_none = term if log_none is None else log_none + term
    if log_none is None:
        return masks.new_zeros(masks.shape[0], probs.shape[-1], size, size, dtype=torch.float32)
    return (-torch.expm1(log_none)).clamp(0, 1)


def boxes_of(mask: np.ndarray, score_map: np.ndarray, label: str) -> list[dict]:
    """One box per connected region of `mask` (x1, y1 exclusive), scored by `score_map`'s maximum in it."""
    labels, count = label_regions(mask)
    if count == 0:
        return []
    peaks = ndimage.maximum(score_map, labels, index=np.arange(1, count + 1))
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels)[:count]):
        if sl is None:
            continue
        ys, xs = sl
        out.append({"label": label, "score": round(float(peaks[i]), 6), "x0": float(xs.start), "y0": float(ys.start),
                    "x1": float(xs.stop), "y1": float(ys.stop)})
    return out


def summarize(maps: np.ndarray, classes: list[str], threshold: float) -> ImageResult:
    """One image's (K, S, S) class maps -> masks, boxes, scores and the verdict."""
    anomaly = maps.max(axis=0).astype(np.float32)
    top = maps.argmax(axis=0)
    index_map = np.where(anomaly >= threshold, top + 1, 0).astype(np.uint8)
    scores = {c: round(float(maps[k].max()), 6) for k, c in enumerate(classes)}
    image_score = float(anomaly.max())
    defective = image_score >= threshold
    best = classes[int(np.argmax([scores[c] for c in classes]))] if defective else None
    boxes = []
    for k, c in enumerate(classes):
        boxes += boxes_of(index_map == k + 1, maps[k], c)
    boxes.sort(key=lambda b: -b["score"])
    return ImageResult(maps.astype(np.float32), anomaly, index_map, scores, round(image_score, 6),
                       "defective" if defective else "normal", best, boxes)


def semantic_maps_from_probs(masks: torch.Tensor, probs: torch.Tensor, size: int) -> torch.Tensor:
    """As `semantic_maps`, from (B, Q, K+1) class probabilities (an ensemble's) instead of logits."""
    return _noisy_or(masks, probs.float()[..., :-1], size)


def record_geometry(record: dict) -> Geometry | None:
    geo = record.get("geometry")
    try:
        return Geometry(**geo) if isinstance(geo, dict) else None
    except Exception:  # noqa: BLE001  (a partial geometry: simply not mapped back)
        return None


def zero_outside(maps: np.ndarray, geo: Geometry | None) -> None:
    """Letterbox padding is not part of the image: nothing is predicted there."""
    if geo is None:
        return
    x0, y0, x1, y1 = geo.content_box
    keep = np.zeros(maps.shape[-2:], dtype=bool)
    keep[y0:y1, x0:x1] = True
    maps[..., ~keep] = 0
