"""Anomaly metrics: image/pixel AUROC, AUPRO (MVTec AD per-region overlap) and IoU.

Both curves are computed exactly from one descending sort of the scores: every distinct score is a
threshold, tied scores move together (so ties give the same value as scikit-learn's `roc_auc_score`),
and points are joined linearly (trapezoid rule). Memory is about 30 bytes per scored pixel (scores,
ground truth, region weights, the sort order and its temporaries).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FPR_LIMIT = 0.3
IOU_THRESHOLD = 0.5
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _cumulative_at_thresholds(scores: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
    """Cumulative sums of `weights` over pixels with score >= t, for each distinct t (descending), from 0."""
    order = np.argsort(-scores)  # order within ties does not matter: only group ends are read
    sorted_scores = scores[order]
    # the last index of each group of equal scores: a threshold admits the whole group at once
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    return [np.r_[0.0, np.cumsum(w[order], dtype=np.float64)[ends]] for w in weights]


def _auc(fps: np.ndarray, tps: np.ndarray) -> float:
    return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Exact ROC AUC of `scores` (higher = positive) against boolean `positive`; None without both classes."""
    scores = np.asarray(scores).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    if positive.all() or not positive.any():
        return None
    tps, fps = _cumulative_at_thresholds(scores, positive, ~positive)
    return _auc(fps, tps)


def _area_to_limit(fpr: np.ndarray, tpr: np.ndarray, limit: float) -> float:
    """Trapezoid area under (fpr, tpr) from 0 to `limit`, the last segment cut at `limit` by interpolation."""
    inside = fpr <= limit
    x, y = fpr[inside], tpr[inside]
    if x[-1] < limit and inside.sum() < fpr.size:
        nxt = int(np.argmax(~inside))
        x0, x1, y0, y1 = fpr[nxt - 1], fpr[nxt], tpr[nxt - 1], tpr[nxt]
        y_cut = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        x, y = np.r_[x, limit], np.r_[y, y_cut]
    return float(np.trapezoid(y, x))


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (labels, count)."""
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    return labels, int(count)


def aupro_from_pixels(scores: np.ndarray, region_weight: np.ndarray, background: np.ndarray, regions: int,
                      fpr_limit: float = FPR_LIMIT) -> float | None:
    """Normalised area under the PRO curve up to `fpr_limit`.

    `region_weight` is 1/|region| for each ground-truth defect pixel (0 elsewhere), so the weights over
    pixels above a threshold, divided by `regions`, are the mean per-region overlap; the false positive
    rate is over `background` pixels. None when there is no region or no background pixel.
    """
    n_bg = int(background.sum())
    if regions == 0 or n_bg == 0:
        return None
    overlap, false_pos = _cumulative_at_thresholds(scores, region_weight, background)
    return _aupro(false_pos, overlap, regions, fpr_limit)


def _aupro(false_pos: np.ndarray, overlap: np.ndarray, regions: int, fpr_limit: float) -> float:
    return _area_to_limit(false_pos / false_pos[-1], overlap / regions, fpr_limit) / fpr_limit


class PixelAccumulator:
    """Collects the pixel set (map scores, ground truth, regions) image by image, then scores it."""

    def __init__(self) -> None:
        self._scores: list[np.ndarray] = []
        self._truth: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self.images = 0
        self.regions = 0
        self.intersection = 0
        self.union = 0

    def add(self, anomaly_map: np.ndarray, mask: np.ndarray | None, content_box=None) -> None:
        """One image: its map, its boolean ground truth (None = all normal) and the content box to keep."""
        truth = np.zeros(anomaly_map.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        labels, count = label_regions(truth)
        weights = np.zeros(truth.shape, dtype=np.float64)  # float64: a region's weights must sum to 1
        if count:
            sizes = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
            weights = np.where(labels > 0, 1.0 / sizes[labels], 0.0)
        if content_box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in content_box)
            anomaly_map, truth, weights = (a[y0:y1, x0:x1] for a in (anomaly_map, truth, weights))
            # a region cut by the content box keeps its full-canvas size; masks are empty outside it anyway
        predicted = anomaly_map >= IOU_THRESHOLD
        self.intersection += int(np.count_nonzero(predicted & truth))
        self.union += int(np.count_nonzero(predicted | truth))
        self._scores.append(anomaly_map.astype(np.float32, copy=False).ravel())
        self._truth.append(truth.ravel())
        self._weights.append(weights.ravel())
        self.images += 1
        self.regions += count

    def result(self, fpr_limit: float = FPR_LIMIT) -> dict:
        """pixel_auroc, aupro and iou (None when the set has no defect pixel) with their counts."""
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0, np.float32)
        truth = np.concatenate(self._truth) if self._truth else np.zeros(0, bool)
        weights = np.concatenate(self._weights) if self._weights else np.zeros(0, np.float64)
        positives = int(truth.sum())
        counts = {"images": self.images, "pixels": int(truth.size), "defect_pixels": positives,
                  "regions": self.regions}
        auroc = aupro = None
        if 0 < positives < truth.size:  # one sort serves both curves
            tps, fps, overlap = _cumulative_at_thresholds(scores, truth, ~truth, weights)
            auroc, aupro = _auc(fps, tps), _aupro(fps, overlap, self.regions, fpr_limit)
        return {"pixel_auroc": auroc, "aupro": aupro, "iou": self.intersection / self.union if positives else None,
                "counts": counts}
