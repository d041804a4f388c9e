"""Anomaly metrics against independent references: sklearn's AUROC (ties included) and a brute-force PRO sweep."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from imdd_models.evaluation.anomaly import PixelAccumulator, aupro_from_pixels, label_regions, roc_auc


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    positive = rng.random(n) < rng.uniform(0.1, 0.9)
    positive[:2] = [True, False]
    levels = int(rng.integers(2, 12))  # few distinct values: many ties, within and across classes
    scores = rng.integers(0, levels, n).astype(np.float32) + 0.5 * positive * rng.random(n).round(1)
    assert roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


def test_roc_auc_edge_cases():
    assert roc_auc(np.array([0.1, 0.9]), np.array([True, True])) is None  # one class only: undefined
    assert roc_auc(np.zeros(0), np.zeros(0, bool)) is None
    assert roc_auc(np.array([0.5, 0.5, 0.5]), np.array([True, False, False])) == 0.5  # all tied
    assert roc_auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert roc_auc(np.array([0.9, 0.1]), np.array([False, True])) == 0.0


def _brute_force_aupro(maps, masks, limit=0.3):
    """MVTec's definition, directly: threshold at every score, per-region overlap and background FPR."""
    regions, background = [], []
    for m, mask in zip(maps, masks):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [m[labels == r] for r in range(1, n + 1)]
        background.append(m[~mask])
    background = np.concatenate(background)
    thresholds = np.r_[np.inf, np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]]
    fpr = np.array([(background >= t).mean() for t in thresholds])
    pro = np.array([np.mean([(r >= t).mean() for r in regions]) for t in thresholds])
    grid = np.linspace(0, limit, 300_001)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 / 1.x
    return trapezoid(np.interp(grid, fpr, pro), grid) / limit


def _random_case(rng, images=3, size=14):
    maps, masks = [], []
    for i in range(images):
        mask = np.zeros((size, size), bool)
        if i > 0:  # the first image is defect-free, as a normal record would be
            for _ in range(int(rng.integers(1, 3))):
                y, x = rng.integers(0, size - 3, 2)
                mask[y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = True
            mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one 8-connected region
        noise = rng.integers(0, 6, (size, size)) / 10  # quantised: ties across classes
        maps.append((noise + 0.35 * mask * rng.random((size, size))).astype(np.float32))
        masks.append(mask)
    return maps, masks


@pytest.mark.parametrize("seed", range(4))
def test_aupro_and_pixel_auroc_match_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    maps, masks = _random_case(rng)
    acc = PixelAccumulator()
    for m, mask in zip(maps, masks):
        acc.add(m, mask)
    result = acc.result()
    assert result["aupro"] == pytest.approx(_brute_force_aupro(maps, masks), abs=2e-4)
    flat_scores = np.concatenate([m.ravel() for m in maps])
    flat_truth = np.concatenate([m.ravel() for m in masks])
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(flat_truth, flat_scores), abs=1e-12)
    predicted = flat_scores >= 0.5
    assert result["iou"] == (predicted & flat_truth).sum() / (predicted | flat_truth).sum()
    assert result["counts"]["regions"] == sum(label_regions(m)[1] for m in masks)


def test_aupro_perfect_random_and_empty():
    mask = np.zeros((20, 20), bool)
    mask[3:6, 3:6] = mask[10:15, 12:14] = True
    perfect = PixelAccumulator()
    perfect.add(mask.astype(np.float32), mask)
    assert perfect.result()["aupro"] == pytest.approx(1.0)
    assert perfect.result()["pixel_auroc"] == 1.0 and perfect.result()["iou"] == 1.0
    # a constant map: every pixel enters at one threshold, PRO = FPR on the chord: (0.3^2 / 2) / 0.3
    flat = PixelAccumulator()
    flat.add(np.zeros((20, 20), np.float32), mask)
    assert flat.result()["aupro"] == pytest.approx(0.15) and flat.result()["pixel_auroc"] == 0.5
    assert flat.result()["iou"] == 0.0
    empty = PixelAccumulator()
    empty.add(np.full((20, 20), 0.7, np.float32), None)  # only normal pixels: nothing to score
    assert empty.result()["pixel_auroc"] is None and empty.result()["aupro"] is None and empty.result()["iou"] is None
    assert aupro_from_pixels(np.zeros(4), np.zeros(4), np.ones(4, bool), 0) is None


def test_content_box_excludes_padding():
    mask = np.zeros((8, 8), bool)
    mask[3:5, 3:5] = True
    anomaly_map = mask.astype(np.float32)
    anomaly_map[:2] = 1.0  # padding rows scored as anomalous: they must not count as false positives
    acc = PixelAccumulator()
    acc.add(anomaly_map, mask, content_box=(0, 2, 8, 8))
    result = acc.result()
    assert result["counts"]["pixels"] == 48
    assert result["pixel_auroc"] == 1.0 and result["iou"] == 1.0


def test_binned_curves_are_exact_on_the_grid_and_close_off_it():
    rng = np.random.default_rng(7)
    maps, masks = _random_case(rng, images=4, size=16)
    maps = [(np.round(m * 20) / 20).astype(np.float32) for m in maps]  # multiples of 0.05 from 0 to 0.85
    assert max(m.max() for m in maps) <= 0.85
    exact, on_grid, coarse = PixelAccumulator(), PixelAccumulator(18, (0.0, 0.85)), PixelAccumulator(5, (0.0, 0.85))
    for m, mask in zip(maps, masks):
        for acc in (exact, on_grid, coarse):
            acc.add(m, mask)
    a, b, c = exact.result(), on_grid.result(), coarse.result()
    assert b["pixel_auroc"] == pytest.approx(a["pixel_auroc"], abs=1e-12)
    assert b["aupro"] == pytest.approx(a["aupro"], abs=1e-12)
    assert b["iou"] == a["iou"] == c["iou"] and b["counts"] == a["counts"]
    assert c["pixel_auroc"] == pytest.approx(a["pixel_auroc"], abs=0.05) and c["pixel_auroc"] != a["pixel_auroc"]
    with pytest.raises(ValueError):
        PixelAccumulator(bins=10)
