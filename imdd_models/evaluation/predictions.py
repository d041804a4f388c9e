"""The predictions folder: the contract between any model and `imdd-models evaluate`.

A predictions folder holds `predictions.jsonl`, one JSON object per image::

    {"key": "demo/woven_fabric/test/hole/003",       # the shard record's key (required)
     "image_score": 0.93,                            # float, higher = more anomalous, or null
     "label": "defective",                           # "normal" | "defective" | null
     "defect_type": "hole",                          # a canonical defect type name, or null
     "class_scores": {"hole": 0.9, "scratch": 0.1},  # class name -> float (may be empty)
     "boxes": [{"label": "hole", "score": 0.8, "x0": 148, "y0": 141, "x1": 198, "y1": 191}],
     "anomaly_map": "maps/000003.npy",               # path relative to the folder, or null
     "class_map": "classes/000003.png",              # per-pixel class index map, or null (optional)
     "class_names": ["hole", "scratch"]}             # what the indices of class_map mean

`class_map` (optional) names a uint8 512x512 index image, a single-channel PNG (mode L, or P read as its
indices) or an integer `.npy`: 0 is background, i >= 1 the i-th name of the line's `class_names` (a list of
non-empty names, required with `class_map`). `evaluate` scores it as per-class IoU and mIoU.

`anomaly_map` names a `.npy` float array (float32; float16/64 accepted) of shape 512x512 on the shards'
512x512 canvas. Box coordinates are canvas pixels, like the shards' `boxes`. An optional `extra` object per
line is carried and ignored. An optional `meta.json` (any JSON object: model, checkpoint, command, date) is
the predictions' provenance and is copied into reports.

Every other field is an error naming the field; NaN or infinite scores are errors naming the key. A missing
field reads as null (`class_scores` as empty), and metrics that need it count the record as lacking a
prediction (`boxes: []` is a prediction of no box, a missing or null `boxes` is none).
`validate_predictions(folder)` lists every problem (an empty list means valid); `read_predictions` raises on
the first one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imdd_build.errors import RunError

PREDICTIONS_FILE = "predictions.jsonl"
META_FILE = "meta.json"
CANVAS = 512
FIELDS = ("key", "image_score", "label", "defect_type", "class_scores", "boxes", "anomaly_map", "class_map",
          "class_names", "extra")
CLASS_MAP_SUFFIXES = (".png", ".npy")
BOX_FIELDS = ("label", "score", "x0", "y0", "x1", "y1")
LABELS = ("normal", "defective")


class PredictionError(RunError):
    """A predictions folder that cannot be scored; the message names the file, line, key or field."""


@dataclass
class Prediction:
    """One validated line of `predictions.jsonl`."""

    key: str
    line: int
    image_score: float | None = None
    label: str | None = None
    defect_type: str | None = None
    class_scores: dict[str, float] = field(default_factory=dict)
    boxes: list[dict] | None = None  # None: no detection output; []: detected nothing
    anomaly_map: str | None = None
    class_map: str | None = None
    class_names: list[str] | None = None


@dataclass
class PredictionSet:
    """A read predictions folder: predictions by key, its provenance and the problems found."""

    folder: Path
    predictions: dict[str, Prediction]
    meta: dict
    sha256: str
    problems: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        """What reports say about where these predictions came from."""
        return {"folder": str(self.folder), "predictions_sha256": self.sha256, "predictions": len(self.predictions),
                **({"meta": self.meta} if self.meta else {})}


def _finite(value, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{where}: expected a number, got {type(value).__name__}")
        return None
    if not math.isfinite(value):
        problems.append(f"{where}: {value} is not a finite number")
        return None
    return float(value)


def _check_boxes(boxes, where: str, problems: list[str]) -> list[dict] | None:
    if boxes is None:
        return None
    if not isinstance(boxes, list):
        problems.append(f"{where}.boxes: expected a list")
        return []
    out = []
    for i, box in enumerate(boxes):
        at = f"{where}.boxes[{i}]"
        if not isinstance(box, dict):
            problems.append(f"{at}: expected an object")
            continue
        unknown = sorted(set(box) - set(BOX_FIELDS))
        missing = [f for f in BOX_FIELDS if f not in box]
        if unknown or missing:
            problems.append(f"{at}: " + "; ".join(
                ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing field(s) {', '.join(missing)}"] if missing else [])))
            continue
        n_before = len(problems)
        values = {k: _finite(box[k], f"{at}.{k}", problems) for k in BOX_FIELDS[1:]}
        if not isinstance(box["label"], str) or not box["label"]:
            problems.append(f"{at}.label: expected a class name")
        if len(problems) > n_before:
            continue
        if values["x1"] < values["x0"] or values["y1"] < values["y0"]:
            problems.append(f"{at}: x1 < x0 or y1 < y0")
            continue
        out.append({"label": box["label"], **values})
    return out


def _parse_line(obj, where: str, problems: list[str]) -> Prediction | None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected a JSON object")
        return None
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(FIELDS)}")
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        problems.append(f"{where}: field 'key' must be a non-empty string")
        return None
    where = f"{where} (key {key!r})"
    label = obj.get("label")
    if label is not None and label not in LABELS:
        problems.append(f"{where}.label: {label!r} is not one of {', '.join(LABELS)} or null")
        label = None
    defect_type = obj.get("defect_type")
    if defect_type is not None and (not isinstance(defect_type, str) or not defect_type):
        problems.append(f"{where}.defect_type: expected a class name or null")
        defect_type = None
    class_scores = obj.get("class_scores") or {}
    if not isinstance(class_scores, dict):
        problems.append(f"{where}.class_scores: expected an object (class name -> score)")
        class_scores = {}
    for name in [k for k, v in class_scores.items() if v is None]:
        problems.append(f"{where}.class_scores[{name!r}]: expected a number, got null")
    class_scores = {str(k): _finite(v, f"{where}.class_scores[{k!r}]", problems)
                    for k, v in class_scores.items() if v is not None}
    anomaly_map = obj.get("anomaly_map")
    if anomaly_map is not None and (not isinstance(anomaly_map, str) or not anomaly_map.endswith(".npy")):
        problems.append(f"{where}.anomaly_map: expected a relative path to a .npy file, or null")
        anomaly_map = None
    class_map, class_names = _check_class_map(obj.get("class_map"), obj.get("class_names"), where, problems)
    return Prediction(key=key, line=0, image_score=_finite(obj.get("image_score"), f"{where}.image_score", problems),
                      label=label, defect_type=defect_type, class_scores=class_scores,
                      boxes=_check_boxes(obj.get("boxes"), where, problems), anomaly_map=anomaly_map,
                      class_map=class_map, class_names=class_names)


def _check_class_map(class_map, class_names, where: str, problems: list[str]) -> tuple[str | None, list[str] | None]:
    if class_names is not None and (not isinstance(class_names, list)
                                    or not all(isinstance(n, str) and n for n in class_names)):
        problems.append(f"{where}.class_names: expected a list of non-empty class names")
        class_names = None
    if class_map is None:
        return None, class_names
    if not isinstance(class_map, str) or not class_map.lower().endswith(CLASS_MAP_SUFFIXES):
        problems.append(f"{where}.class_map: expected a relative path to a .png or .npy file, or null")
        return None, class_names
    if class_names is None:
        problems.append(f"{where}.class_names: required with class_map (index i >= 1 is the i-th name)")
        return None, None
    return class_map, class_names


def _map_path(folder: Path, relative: str, what: str = "anomaly map") -> Path:
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        raise PredictionError(f"{relative}: {what} path leaves the predictions folder")
    return path


def load_class_map(folder: Path, pred: Prediction) -> np.ndarray:
    """The prediction's class map as a 512x512 uint8 index array; PredictionError naming the file otherwise."""
    from PIL import Image
    path = _map_path(Path(folder), pred.class_map, "class map")
    where = f"{path} (key {pred.key!r})"
    if not path.is_file():
        raise PredictionError(f"{where}: class map file not found")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise PredictionError(f"{where}: not a readable .npy array ({exc})") from None
        if not np.issubdtype(array.dtype, np.integer):
            raise PredictionError(f"{where}: class map dtype {array.dtype}, expected uint8 class indices")
    else:
        try:
            with Image.open(path) as image:
                image.load()
                if image.mode not in ("L", "P"):
                    raise PredictionError(f"{where}: class map PNG has mode {image.mode}, expected a single-channel "
                                          f"index image (L, or P read as its indices)")
                array = np.asarray(image)
        except OSError as exc:
            raise PredictionError(f"{where}: not a readable PNG ({exc})") from None
    if array.shape != (CANVAS, CANVAS):
        raise PredictionError(f"{where}: class map has shape {array.shape}, expected ({CANVAS}, {CANVAS})")
    top = int(array.max()) if array.size else 0
    if int(array.min()) < 0 or top > len(pred.class_names or []):
        raise PredictionError(f"{where}: class map has index {top if top > 0 else int(array.min())} but class_names "
                              f"has {len(pred.class_names or [])} name(s) (0 = background, i = the i-th name)")
    return array.astype(np.uint8, copy=False)


def load_anomaly_map(folder: Path, pred: Prediction) -> np.ndarray:
    """The prediction's anomaly map as a 512x512 float32 array; PredictionError naming the file otherwise."""
    path = _map_path(Path(folder), pred.anomaly_map)
    where = f"{path} (key {pred.key!r})"
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PredictionError(f"{where}: anomaly map file not found") from None
    except (ValueError, OSError) as exc:
        raise PredictionError(f"{where}: not a readable .npy array ({exc})") from None
    if array.shape != (CANVAS, CANVAS):
        raise PredictionError(f"{where}: anomaly map has shape {array.shape}, expected ({CANVAS}, {CANVAS})")
    if not np.issubdtype(array.dtype, np.floating):
        raise PredictionError(f"{where}: anomaly map dtype {array.dtype}, expected float32")
    array = array.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise PredictionError(f"{where}: anomaly map has {bad} NaN or infinite value(s)")
    return array


def _read_meta(folder: Path, problems: list[str]) -> dict:
    path = folder / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        problems.append(f"{path}: not valid JSON ({exc})")
        return {}
    if not isinstance(meta, dict):
        problems.append(f"{path}: expected a JSON object")
        return {}
    return meta


def scan_predictions(folder: str | Path, check_maps: bool = False) -> PredictionSet:
    """Read a predictions folder, collecting every problem instead of stopping at the first."""
    folder = Path(folder)
    path = folder / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {PREDICTIONS_FILE} (expected a predictions folder)")
    raw = path.read_bytes()
    problems: list[str] = []
    predictions: dict[str, Prediction] = {}
    for number, text in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(text)
        except ValueError as exc:
            problems.append(f"{where}: not valid JSON ({exc})")
            continue
        pred = _parse_line(obj, where, problems)
        if pred is None:
            continue
        pred.line = number
        if pred.key in predictions:
            problems.append(f"{where}: duplicate key {pred.key!r} (first on line {predictions[pred.key].line})")
            continue
        predictions[pred.key] = pred
        for ref, load in ((pred.anomaly_map, load_anomaly_map), (pred.class_map, load_class_map)):
            if ref is None:
                continue
            try:
                _map_path(folder, ref, "map")
                if check_maps:
                    load(folder, pred)
            except PredictionError as exc:
                problems.append(f"{where}: {exc}")
    return PredictionSet(folder, predictions, _read_meta(folder, problems), hashlib.sha256(raw).hexdigest(), problems)


def validate_predictions(folder: str | Path, check_maps: bool = True) -> list[str]:
    """Every problem of a predictions folder (file, line, key and field named); empty when it is valid.

    For writers of the format (`imdd-models predict`) to check their output; maps are loaded when
    `check_maps` (shape 512x512, float, finite)."""
    try:
        return scan_predictions(folder, check_maps=check_maps).problems
    except FileNotFoundError as exc:
        return [str(exc)]


def read_predictions(folder: str | Path, check_maps: bool = False) -> PredictionSet:
    """A valid predictions folder (every referenced map loaded and checked when `check_maps`, else when
    scored); PredictionError on the first problem."""
    preds = scan_predictions(folder, check_maps=check_maps)
    if preds.problems:
        more = f" (and {len(preds.problems) - 1} more problem(s))" if len(preds.problems) > 1 else ""
        raise PredictionError(preds.problems[0] + more)
    return preds
