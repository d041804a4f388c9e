"""Box AP (pycocotools) against a hand-worked case and an independent brute-force COCO AP."""

from __future__ import annotations

import numpy as np
import pytest

from imdd_models.evaluation.detection import BoxImage, box_map


def _box(label, x0, y0, x1, y1, score=None):
    box = {"label": label, "x0": float(x0), "y0": float(y0), "x1": float(x1), "y1": float(y1)}
    return box if score is None else {**box, "score": float(score)}


def test_hand_worked_ap():
    """Two truths, three detections: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.

    Interpolated precision is 1 for the 51 recall points 0..0.50 and 2/3 for the 50 points 0.51..1.00.
    """
    a, b = _box("scratch", 0, 0, 10, 10), _box("scratch", 50, 50, 70, 80)
    images = [BoxImage("1", [a], [{**a, "score": 0.9}, _box("scratch", 100, 100, 120, 120, 0.8)]),
              BoxImage("2", [b], [{**b, "score": 0.7}])]
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    result = box_map(images)
    assert result["map50"] == pytest.approx(expected) and result["map50_95"] == pytest.approx(expected)
    assert result["counts"] == {"images": 2, "classes": 1, "truth_boxes": 2, "detections": 3}


def _iou(d, g):
    iw = max(0.0, min(d["x1"], g["x1"]) - max(d["x0"], g["x0"]))
    ih = max(0.0, min(d["y1"], g["y1"]) - max(d["y0"], g["y0"]))
    inter = iw * ih
    union = (d["x1"] - d["x0"]) * (d["y1"] - d["y0"]) + (g["x1"] - g["x0"]) * (g["y1"] - g["y0"]) - inter
    return inter / union if union > 0 else 0.0


def _brute_force_ap(images, cls, threshold):
    """COCO's AP for one class and IoU threshold, written out: greedy matching, 101-point interpolation."""
    scored, n_truth = [], 0
    for im in images:
        truth = [g for g in im.truth if g["label"] == cls]
        n_truth += len(truth)
        dets = sorted((d for d in im.detections if d["label"] == cls), key=lambda d: -d["score"])[:100]
        taken = [False] * len(truth)
        for d in dets:
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for j, g in enumerate(truth):
                if not taken[j] and _iou(d, g) >= best_iou:
                    best, best_iou = j, _iou(d, g)
            if best >= 0:
                taken[best] = True
            scored.append((d["score"], best >= 0))
    if n_truth == 0:
        return None
    scored.sort(key=lambda s: -s[0])
    tp = np.cumsum([s[1] for s in scored])
    fp = np.cumsum([not s[1] for s in scored])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    points = []
    for r in np.linspace(0, 1, 101):
        idx = np.searchsorted(recall, r, side="left")
        points.append(precision[idx] if idx < len(precision) else 0.0)
    return float(np.mean(points))


def _random_images(rng, n_images=8, classes=("crack", "hole", "stain")):
    images = []
    for i in range(n_images):
        truth = []
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 400, 2)
            truth.append(_box(str(rng.choice(classes)), x, y, x + rng.uniform(10, 100), y + rng.uniform(10, 100)))
        dets = []
        for g in truth:  # jittered copies (some good, some poor), sometimes with the wrong class
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 8, 4)
                label = g["label"] if rng.random() < 0.8 else str(rng.choice(classes))
                dets.append(_box(label, g["x0"] + j[0], g["y0"] + j[1], g["x1"] + abs(j[2]) + 1,
                                 g["y1"] + abs(j[3]) + 1, rng.random()))
        for _ in range(int(rng.integers(0, 3))):  # pure false positives
            x, y = rng.uniform(0, 400, 2)
            dets.append(_box(str(rng.choice(classes)), x, y, x + 30, y + 30, rng.random()))
        images.append(BoxImage(str(i), truth, dets))
    return images


@pytest.mark.parametrize("seed", range(5))
def test_map_matches_brute_force(seed):
    images = _random_images(np.random.default_rng(seed))
    classes = sorted({g["label"] for im in images for g in im.truth})
    per_class = {c: [_brute_force_ap(images, c, t) for t in np.linspace(0.5, 0.95, 10)] for c in classes}
    result = box_map(images)
    assert result["map50"] == pytest.approx(np.mean([v[0] for v in per_class.values()]), abs=1e-9)
    assert result["map50_95"] == pytest.approx(np.mean([np.mean(v) for v in per_class.values()]), abs=1e-9)
    one = classes[0]
    sub = box_map(images, {one})
    assert sub["map50"] == pytest.approx(per_class[one][0], abs=1e-9)


def test_empty_cases():
    truth = _box("hole", 10, 10, 40, 40)
    assert box_map([BoxImage("a", [], [_box("hole", 0, 0, 5, 5, 0.9)])])["map50"] is None  # no truth: undefined
    no_dets = box_map([BoxImage("a", [truth], [])])
    assert no_dets["map50"] == 0.0 and no_dets["map50_95"] == 0.0
    # a detection on a normal image (no truth) ranks above the true one: a false positive, AP drops
    with_normal = box_map([BoxImage("a", [truth], [{**truth, "score": 0.5}]),
                           BoxImage("n", [], [_box("hole", 0, 0, 30, 30, 0.9)])])
    alone = box_map([BoxImage("a", [truth], [{**truth, "score": 0.5}])])
    assert alone["map50"] == pytest.approx(1.0) and with_normal["map50"] == pytest.approx(0.5)
    # detections of a class without truth do not add a class to the average
    other = box_map([BoxImage("a", [truth], [{**truth, "score": 0.5}, _box("crack", 0, 0, 9, 9, 0.9)])])
    assert other["map50"] == pytest.approx(1.0) and other["counts"]["classes"] == 1
