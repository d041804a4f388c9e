"""Anomaly metrics: image/pixel AUROC, AUPRO (MVTec AD per-region overlap) and IoU.

Both curves are computed exactly from one descending sort of the scores: every distinct score is a
threshold, tied scores move together (so ties give the same value as scikit-learn's `roc_auc_score`),
and points are joined linearly (trapezoid rule). Memory is about 30 bytes per scored pixel (scores,
ground truth, region weights, the sort order and its temporaries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FPR_LIMIT = 0.3
IOU_THRESHOLD = 0.5
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid rule (numpy 1.x has no np.trapezoid, numpy 2 deprecates np.trapz)."""
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2)


def _cumulative_at_thresholds(scores: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
    """Cumulative sums of `weights` over pixels with score >= t, for each distinct t (descending), from 0."""
    order = np.argsort(-scores)  # order within ties does not matter: only group ends are read
    sorted_scores = scores[order]
    # the last index of each group of equal scores: a threshold admits the whole group at once
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    return [np.r_[0.0, np.cumsum(w[order], dtype=np.float64)[ends]] for w in weights]


def _auc(fps: np.ndarray, tps: np.ndarray) -> float:
    return float(_trapezoid(tps / tps[-1], fps / fps[-1]))


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
    return float(_trapezoid(y, x))


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


@dataclass
class ImagePixels:
    """One image's scored pixels (inside its content box): scores, ground truth, region weights, IoU counts."""

    scores: np.ndarray
    truth: np.ndarray
    weights: np.ndarray
    regions: int
    intersection: int
    union: int


def image_pixels(anomaly_map: np.ndarray, mask: np.ndarray | None, content_box=None) -> ImagePixels:
    """An image's map and boolean ground truth (None = all normal), cut to the content box."""
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
    return ImagePixels(anomaly_map.astype(np.float32, copy=False).ravel(), truth.ravel(), weights.ravel(), count,
                       int(np.count_nonzero(predicted & truth)), int(np.count_nonzero(predicted | truth)))


@dataclass
class BinnedImage:
    """An image reduced to per-bin sums (bin k = scores nearest to lo + k (hi - lo) / (bins - 1))."""

    positive: np.ndarray
    negative: np.ndarray
    overlap: np.ndarray
    regions: int
    intersection: int
    union: int


def bin_image(px: ImagePixels, lo: float, hi: float, bins: int) -> BinnedImage:
    """Per-bin counts of defect and normal pixels and sums of region weights; scores outside [lo, hi] are clipped."""
    scale = (bins - 1) / (hi - lo) if hi > lo else 0.0
    index = np.clip(np.rint((px.scores.astype(np.float64) - lo) * scale), 0, bins - 1).astype(np.int64)
    return BinnedImage(np.bincount(index, weights=px.truth, minlength=bins),
                       np.bincount(index, weights=~px.truth, minlength=bins),
                       np.bincount(index, weights=px.weights, minlength=bins),
                       px.regions, px.intersection, px.union)


class PixelAccumulator:
    """Collects the pixel set image by image, then scores it.

    Exact by default (every distinct score a threshold). With `bins` (and the scores' `value_range`),
    each image is reduced to per-bin sums at once: constant memory, thresholds on a grid of `bins`
    values (exact when the scores lie on that grid), as anomalib's `num_thresholds`.
    """

    def __init__(self, bins: int = 0, value_range: tuple[float, float] | None = None) -> None:
        if bins and (bins < 2 or value_range is None):
            raise ValueError("binned pixel metrics need bins >= 2 and the scores' value range")
        self.bins, self.value_range = bins, value_range
        self._pixels: list[ImagePixels] = []
        self._binned = [np.zeros(bins) for _ in range(3)] if bins else None
        self.images = self.regions = self.intersection = self.union = 0

    def add(self, anomaly_map: np.ndarray, mask: np.ndarray | None, content_box=None) -> None:
        """One image: its map, its boolean ground truth (None = all normal) and the content box to keep."""
        px = image_pixels(anomaly_map, mask, content_box)
        if self.bins:
            self.add_binned(bin_image(px, *self.value_range, self.bins))
        else:
            self.add_pixels(px)

    def _count(self, item) -> None:
        self.images += 1
        self.regions += item.regions
        self.intersection += item.intersection
        self.union += item.union

    def add_pixels(self, px: ImagePixels) -> None:
        self._pixels.append(px)
        self._count(px)

    def add_binned(self, binned: BinnedImage) -> None:
        for total, part in zip(self._binned, (binned.positive, binned.negative, binned.overlap)):
            total += part
        self._count(binned)

    def _curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """Cumulative (true positives, false positives, overlap) from the highest threshold, and class sizes."""
        if self.bins:
            tps, fps, overlap = (np.r_[0.0, np.cumsum(a[::-1])] for a in self._binned)
            return tps, fps, overlap, int(round(tps[-1])), int(round(fps[-1]))
        scores = np.concatenate([p.scores for p in self._pixels]) if self._pixels else np.zeros(0, np.float32)
        truth = np.concatenate([p.truth for p in self._pixels]) if self._pixels else np.zeros(0, bool)
        positives = int(truth.sum())
        if positives == 0 or positives == truth.size:
            return None, None, None, positives, truth.size - positives
        weights = np.concatenate([p.weights for p in self._pixels])
        tps, fps, overlap = _cumulative_at_thresholds(scores, truth, ~truth, weights)  # one sort, both curves
        return tps, fps, overlap, positives, truth.size - positives

    def result(self, fpr_limit: float = FPR_LIMIT) -> dict:
        """pixel_auroc, aupro and iou (None when the set has no defect pixel) with their counts."""
        tps, fps, overlap, positives, negatives = self._curves()
        counts = {"images": self.images, "pixels": positives + negatives, "defect_pixels": positives,
                  "regions": self.regions}
        auroc = aupro = None
        if positives and negatives:
            auroc, aupro = _auc(fps, tps), _aupro(fps, overlap, self.regions, fpr_limit)
        return {"pixel_auroc": auroc, "aupro": aupro, "iou": self.intersection / self.union if positives else None,
                "counts": counts}
