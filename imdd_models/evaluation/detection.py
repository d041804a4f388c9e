"""COCO-style box AP with pycocotools: mAP@0.5 and mAP@0.50:0.95.

101-point interpolated precision, IoU thresholds 0.50:0.05:0.95, all areas, at most 100 detections per
image and class (pycocotools' `maxDets`), averaged over the classes that have ground-truth boxes.
Images without ground-truth boxes still count: their detections are false positives.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

MAX_DETECTIONS = 100


@dataclass
class BoxImage:
    """One scored image: its ground-truth boxes [{label, x0..y1}] and detections [{label, score, x0..y1}]."""

    key: str
    truth: list[dict]
    detections: list[dict] = field(default_factory=list)


def _xywh(box: dict) -> list[float]:
    x0, y0, x1, y1 = (float(box[k]) for k in ("x0", "y0", "x1", "y1"))
    return [x0, y0, x1 - x0, y1 - y0]


def _coco_inputs(images: list[BoxImage]) -> tuple[dict, list[dict], dict[str, int]]:
    names = sorted({b["label"] for im in images for b in [*im.truth, *im.detections]})
    cat_ids = {name: i + 1 for i, name in enumerate(names)}  # pycocotools treats id 0 as "no match"
    gt = {"images": [{"id": i + 1} for i in range(len(images))],
          "categories": [{"id": cid, "name": name} for name, cid in cat_ids.items()], "annotations": []}
    dets = []
    for i, im in enumerate(images, start=1):
        for box in im.truth:
            xywh = _xywh(box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "iscrowd": 0,
                                      "category_id": cat_ids[box["label"]], "bbox": xywh, "area": xywh[2] * xywh[3]})
        for det in im.detections:
            dets.append({"image_id": i, "category_id": cat_ids[det["label"]], "bbox": _xywh(det),
                         "score": float(det["score"])})
    return gt, dets, cat_ids


def _precision(images: list[BoxImage], cat_ids: list[int], gt: dict, dets: list[dict]) -> np.ndarray:
    """pycocotools' precision array [T, R, K] at area "all" and maxDets 100 (-1 where a class has no truth)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.catIds = cat_ids
        evaluator.params.maxDets = [1, 10, MAX_DETECTIONS]
        evaluator.evaluate()
        evaluator.accumulate()
    area_all = evaluator.params.areaRngLbl.index("all")
    return evaluator.eval["precision"][:, :, :, area_all, -1]


def box_map(images: list[BoxImage], classes: set[str] | None = None) -> dict:
    """map50 and map50_95 over `images`, averaged over the classes (within `classes`) that have truth boxes."""
    truth_classes = {b["label"] for im in images for b in im.truth}
    scored = sorted(truth_classes if classes is None else truth_classes & set(classes))
    counts = {"images": len(images), "classes": len(scored),
              "truth_boxes": sum(1 for im in images for b in im.truth if b["label"] in scored),
              "detections": sum(1 for im in images for d in im.detections if classes is None or d["label"] in classes)}
    if not scored:
        return {"map50": None, "map50_95": None, "counts": counts}
    gt, dets, cat_ids = _coco_inputs(images)
    dets = [d for d in dets if d["category_id"] in {cat_ids[c] for c in scored}]
    if not dets:  # pycocotools cannot load an empty result list; no detection means zero precision
        return {"map50": 0.0, "map50_95": 0.0, "counts": counts}
    precision = _precision(images, [cat_ids[c] for c in scored], gt, dets)
    at50 = precision[0]
    return {"map50": float(at50[at50 > -1].mean()), "map50_95": float(precision[precision > -1].mean()),
            "counts": counts}
