"""`evaluate`: a predictions folder scored against a split of IMDD shards, overall and by group.

Records are read with the one shard reader (`imdd_models.data.iter_raw`, pixels left encoded: only the
masks are decoded, when a map is scored). Every record of the split is joined with its prediction by
key; records without one are counted as `missing` (never silently dropped), predictions for keys not
in the split are an error naming the key unless `allow_extra`.

Groups: the whole split, each source, each defect class, and the seen/unseen class sets. A class
group keeps every normal record and the defective records carrying one of its classes; box AP of a
class group averages the AP of its classes over all images of the box sources.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imdd_build.errors import RunError

from ..data import ReadStats, iter_raw, matches, parse_where
from .anomaly import BinnedImage, PixelAccumulator, bin_image, image_pixels, roc_auc
from .classification import accuracy
from .classiou import class_iou, mean_iou
from .detection import BoxImage, box_map
from .predictions import LABELS, Prediction, PredictionError, PredictionSet, load_anomaly_map

METRICS = ("image_auroc", "pixel_auroc", "aupro", "iou", "map50", "map50_95", "accuracy", "miou")
_EXAMPLES = 20


@dataclass
class Item:
    """One record of the split (what scoring needs of it) and its prediction (None when missing)."""

    key: str
    source: str
    label: str
    defect_types: list[str]
    boxes: list[dict]
    mask_bytes: bytes | None
    content_box: tuple | None
    pred: Prediction | None
    class_mask_bytes: bytes | None = None


def _item(row: dict, pred: Prediction | None) -> Item:
    geometry = row.get("geometry") or {}
    # WebDataset shards carry an all-zero mask.png for records without a mask; has_mask tells which
    has_mask = bool(row.get("mask_bytes")) and row.get("has_mask", True) is not False
    has_class_mask = bool(row.get("class_mask_bytes")) and row.get("has_class_mask", True) is not False
    return Item(key=row["key"], source=row.get("source") or "?", label=row.get("label") or "",
                defect_types=list(row.get("defect_types") or []), boxes=list(row.get("boxes") or []),
                mask_bytes=row["mask_bytes"] if has_mask else None, content_box=geometry.get("content_box"), pred=pred,
                class_mask_bytes=row["class_mask_bytes"] if has_class_mask else None)


def join(data: str, preds: PredictionSet, split: str | None, where: str | None = None,
         allow_extra: bool = False, on_record: Callable[[], None] | None = None) -> tuple[list[Item], dict]:
    """Records of the split joined with their predictions, and the join's counts.

    Predictions for records of the split that `where` leaves out are ignored and counted
    (`outside_where`); predictions for keys that are not records of the split at all are `extra`."""
    terms = parse_where(where)
    items: list[Item] = []
    left_out: set[str] = set()
    for row in iter_raw(data, split, None, ReadStats()):
        if not matches(row, terms):
            left_out.add(row["key"])
            continue
        items.append(_item(row, preds.predictions.get(row["key"])))
        if on_record:
            on_record()
    if not items:
        from ..data.explain import no_records_message
        raise RunError(no_records_message(data, split, where))
    keys = {it.key for it in items}
    missing = [it.key for it in items if it.pred is None]
    extra = [k for k in preds.predictions if k not in keys and k not in left_out]
    if extra and not allow_extra:
        raise PredictionError(f"{preds.folder}: prediction for key {extra[0]!r} which is not a record of the "
                              f"evaluated split ({len(extra)} such key(s); --allow-extra counts them instead)")
    return items, {"records": len(items), "predicted": len(items) - len(missing), "missing": len(missing),
                   "missing_examples": missing[:_EXAMPLES], "extra": len(extra), "extra_examples": extra[:_EXAMPLES],
                   "outside_where": sum(1 for k in preds.predictions if k in left_out)}


def _in_classes(item: Item, classes: set[str] | None) -> bool:
    return item.label == "normal" or classes is None or bool(classes & set(item.defect_types))


def _image_auroc(items: list[Item], classes: set[str] | None) -> dict:
    scope = [it for it in items if it.label in LABELS and _in_classes(it, classes)]
    scored = [it for it in scope if it.pred is not None and it.pred.image_score is not None]
    positive = np.array([it.label == "defective" for it in scored], dtype=bool)
    value = roc_auc(np.array([it.pred.image_score for it in scored], dtype=np.float64), positive)
    return {"image_auroc": value, "counts": {"records": len(scored), "defective": int(positive.sum()),
                                             "normal": int((~positive).sum()),
                                             "no_prediction": len(scope) - len(scored)}}


def _mask_array(item: Item) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(item.mask_bytes)).convert("L")) > 127


class MapReader:
    """The anomaly maps of a predictions folder as scored pixels, for every group that needs them.

    Exact (`bins` 0): maps are read again for each group, so memory holds one group's pixel set at a
    time. Binned: a first pass finds the scores' range over the whole pixel set, then each image is
    read once more and kept only as per-bin sums, so every group is scored from those.
    """

    def __init__(self, folder, bins: int = 0) -> None:
        self.folder, self.bins = folder, bins
        self.value_range: tuple[float, float] | None = None
        self._binned: dict[str, BinnedImage] = {}

    def prepare(self, items: list[Item]) -> None:
        """Binned mode: the value range over the maps of the split's pixel set."""
        if not self.bins:
            return
        lo, hi = np.inf, -np.inf
        for it in _pixel_set(items, None, _sources_with(items, lambda i: i.mask_bytes is not None)):
            if it.pred is not None and it.pred.anomaly_map is not None:
                px = image_pixels(load_anomaly_map(self.folder, it.pred), None, it.content_box)
                if px.scores.size:
                    lo, hi = min(lo, float(px.scores.min())), max(hi, float(px.scores.max()))
        self.value_range = (lo, hi) if lo <= hi else (0.0, 1.0)

    def add(self, acc: PixelAccumulator, it: Item) -> None:
        """Add one item's map and ground truth to `acc`."""
        mask = _mask_array(it) if it.mask_bytes is not None else None
        if not self.bins:
            acc.add(load_anomaly_map(self.folder, it.pred), mask, it.content_box)
            return
        if it.key not in self._binned:
            px = image_pixels(load_anomaly_map(self.folder, it.pred), mask, it.content_box)
            self._binned[it.key] = bin_image(px, *self.value_range, self.bins)
        acc.add_binned(self._binned[it.key])

    def accumulator(self) -> PixelAccumulator:
        return PixelAccumulator(self.bins, self.value_range)


def _pixel_set(items: list[Item], classes: set[str] | None, mask_sources: set[str]) -> list[Item]:
    return [it for it in items if (it.mask_bytes is not None and _in_classes(it, classes))
            or (it.label == "normal" and it.source in mask_sources)]


def _pixel_metrics(items: list[Item], maps: MapReader, classes: set[str] | None, mask_sources: set[str]) -> dict:
    acc = maps.accumulator()
    no_map = 0
    for it in _pixel_set(items, classes, mask_sources):
        if it.pred is None or it.pred.anomaly_map is None:
            no_map += 1
            continue
        maps.add(acc, it)
    result = acc.result()
    result["counts"]["no_prediction"] = no_map
    if maps.bins:
        result["counts"]["bins"] = maps.bins
    return result


def _box_metrics(items: list[Item], classes: set[str] | None, box_sources: set[str]) -> dict:
    scope = [it for it in items if it.source in box_sources]
    images = [BoxImage(it.key, it.boxes, it.pred.boxes) for it in scope
              if it.pred is not None and it.pred.boxes is not None]
    result = box_map(images, classes)
    result["counts"]["no_prediction"] = len(scope) - len(images)
    return result


def _accuracy(items: list[Item], classes: set[str] | None) -> dict:
    scope = [it for it in items if it.label in LABELS and _in_classes(it, classes)]
    return accuracy([(it.label, it.defect_types, it.pred.label if it.pred else None,
                      it.pred.defect_type if it.pred else None) for it in scope])


def _sources_with(items: list[Item], has: Callable[[Item], bool]) -> set[str]:
    return {it.source for it in items if it.label == "defective" and has(it)}


def segmentation(items: list[Item], maps: MapReader) -> dict:
    """Per-class IoU and mIoU (`classiou.class_iou`) over `items`."""
    return class_iou(items, maps.folder, _sources_with(items, lambda it: it.mask_bytes is not None
                                                       or it.class_mask_bytes is not None))


def score(items: list[Item], maps: MapReader, classes: set[str] | None = None, seg: dict | None = None) -> dict:
    """The eight metrics (each None when nothing in `items` scores it) and `counts` per metric.

    mIoU: over `items` when `seg` is None; otherwise the mean over `classes` of `seg`'s per-class IoU (a class
    is judged over the whole split's confusion matrix, not over a subset of images)."""
    mask_sources = _sources_with(items, lambda it: it.mask_bytes is not None)
    box_sources = _sources_with(items, lambda it: bool(it.boxes))
    image = _image_auroc(items, classes)
    pixel = _pixel_metrics(items, maps, classes, mask_sources)
    boxes = _box_metrics(items, classes, box_sources)
    acc = _accuracy(items, classes)
    if seg is None:
        seg = segmentation(items, maps)
    if classes is None:
        miou, seg_counts = seg["miou"], seg["counts"]
    else:
        miou = mean_iou(seg["per_class_iou"], classes)
        seg_counts = {**seg["counts"], "classes": sum(c in seg["per_class_iou"] for c in (classes or ()))}
    values = {"image_auroc": image["image_auroc"], "pixel_auroc": pixel["pixel_auroc"], "aupro": pixel["aupro"],
              "iou": pixel["iou"], "map50": boxes["map50"], "map50_95": boxes["map50_95"], "accuracy": acc["accuracy"],
              "miou": miou}
    counts = {"image_auroc": image["counts"], "pixel_auroc": pixel["counts"], "aupro": pixel["counts"],
              "iou": pixel["counts"], "map50": boxes["counts"], "map50_95": boxes["counts"], "accuracy": acc["counts"],
              "miou": seg_counts}
    out = {**values, "counts": counts}
    if classes is None:
        out["per_class_iou"], out["background_iou"] = seg["per_class_iou"], seg["background_iou"]
    return out


def classes_of(items: list[Item]) -> list[str]:
    """Defect classes of the split's defective records, sorted."""
    return sorted({t for it in items if it.label == "defective" for t in it.defect_types})


def breakdowns(items: list[Item], maps: MapReader, seen: set[str] | None = None, unseen: set[str] | None = None,
               by_group: bool = True, on_group: Callable[[str], None] | None = None, seg: dict | None = None) -> dict:
    """Per-source and per-class results (`by_group`), and seen/unseen results when a seen set is given.

    `seg`: the whole split's `segmentation` result, whose per-class IoU the class groups' mIoU is taken from."""
    out: dict = {}
    seg = seg if seg is not None else segmentation(items, maps)
    if by_group:
        out["by_source"], out["by_class"] = {}, {}
        for source in sorted({it.source for it in items}):
            out["by_source"][source] = score([it for it in items if it.source == source], maps)
            if on_group:
                on_group(f"source {source}")
        for cls in classes_of(items):
            out["by_class"][cls] = score(items, maps, {cls}, seg)
            if on_group:
                on_group(f"class {cls}")
    if seen is not None:
        unseen = unseen if unseen is not None else set(classes_of(items)) - seen
        out["classes_seen"], out["classes_unseen"] = sorted(seen), sorted(unseen)
        out["seen"] = score(items, maps, seen, seg)
        out["unseen"] = score(items, maps, unseen, seg)
        out["miou_seen"], out["miou_unseen"] = out["seen"]["miou"], out["unseen"]["miou"]
    return out
