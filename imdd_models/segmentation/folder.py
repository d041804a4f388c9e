"""The predictions folder that `predict` writes, and that `imdd-models evaluate` reads:
    OUT/predictions.jsonl   one object per image: key, image_score, label, defect_type, class_scores, boxes
                            (512x512 canvas), anomaly_map (maps/<name>.npy, float32 512x512), class_map
                            (maps/<name>.classes.png, uint8 512x512: 0 background, i >= 1 the i-th name of the
                            line's `class_names`) and class_names; `extra`: geometry and boxes_original
                            (original pixels) where the image's placement is known
    OUT/maps/               the .npy anomaly maps and class maps
    OUT/overlays/           <name>.png: the image with the anomaly map tinted and the boxes drawn, for people
                            (zlib level 1: a quarter of the default level's encoding time, ~15% more bytes)
    OUT/predict.json        the run's identity: the model (weights digest, step, trained classes) and options
    OUT/meta.json           the predictions' provenance, which evaluation reports copy: the same identity plus
                            `seen_classes`, `unseen_classes`, `split`, the ensemble used

`PredictionsWriter` turns each image's class maps into its verdict, boxes and files, in `writers` threads (PNG
encoding and numpy release the GIL) or in the caller's (0), and appends the lines in input order, each only
after its files are complete: the folder is the same bytes whatever `writers`, and a run stopped by an error
or Ctrl-C keeps a line for every finished image, so the rerun (`done_keys`) predicts only the rest.
`check_out` lets a folder be resumed only by the same model and options.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from imdd_build.errors import RunError
from imdd_build.geometry import mask_to_original
from imdd_build.record import Geometry

from ..jsonfile import read_json
from .postprocess import ImageResult, record_geometry, summarize, zero_outside


def safe_name(key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[-80:] or "image"
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def done_keys(path: Path) -> set[str]:
    """Keys of the complete lines of an earlier run; a torn last line is cut off."""
    if not path.is_file():
        return set()
    keys, good = set(), 0
    data = path.read_bytes()
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError):
            break
        good += len(line)
    if good != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return keys


def _original_boxes(boxes: list[dict], geo: Geometry) -> list[dict]:
    out = []
    for b in boxes:
        cx0, cy0, cx1, cy1 = geo.crop_box
        x0, y0 = geo.to_original(b["x0"], b["y0"])
        x1, y1 = geo.to_original(b["x1"], b["y1"])
        x0, x1 = min(max(x0, cx0), cx1), min(max(x1, cx0), cx1)
        y0, y1 = min(max(y0, cy0), cy1), min(max(y1, cy0), cy1)
        out.append({**b, "x0": round(x0, 2), "y0": round(y0, 2), "x1": round(x1, 2), "y1": round(y1, 2)})
    return out


def _overlay(record: dict, result: ImageResult, geo: Geometry | None) -> Image.Image:
    """The anomaly map tinted red over the image (the original for image files), boxes with labels."""
    heat, boxes = result.anomaly_map, result.boxes
    base = record["image"]
    if record.get("original") is not None and geo is not None:
        base = record["original"]
        w, h = record["orig_size"]
        heat = mask_to_original(np.round(heat * 255).astype(np.uint8), geo, w, h).astype(np.float32) / 255
        boxes = _original_boxes(boxes, geo)
    rgb = np.asarray(base.convert("RGB"), dtype=np.float32)
    alpha = (heat[..., None] * 0.6).clip(0, 0.6)
    tinted = rgb * (1 - alpha) + np.array([255.0, 0.0, 0.0]) * alpha
    im = Image.fromarray(tinted.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for b in boxes[:20]:
        draw.rectangle([b["x0"], b["y0"], max(b["x0"], b["x1"] - 1), max(b["y0"], b["y1"] - 1)],
                       outline=(255, 255, 0), width=2)
        draw.text((b["x0"] + 2, max(0, b["y0"] - 11)), f"{b['label']} {b['score']:.2f}", fill=(255, 255, 0))
    return im


def _write_files(out: Path, record: dict, result: ImageResult, classes: list[str]) -> dict:
    name = safe_name(record["key"])
    np.save(out / "maps" / f"{name}.npy", result.anomaly_map.astype(np.float32))
    Image.fromarray(result.class_index_map, "L").save(out / "maps" / f"{name}.classes.png")
    geo = record_geometry(record)
    _overlay(record, result, geo).save(out / "overlays" / f"{name}.png", compress_level=1)
    # What the evaluation format has no field for goes under `extra` (any other top-level field is an error).
    extra = {}
    if geo is not None:
        extra["geometry"] = geo.model_dump()
        extra["boxes_original"] = _original_boxes(result.boxes, geo)
    return {"key": record["key"], "image_score": result.image_score, "label": result.label,
            "defect_type": result.defect_type, "class_scores": result.class_scores, "boxes": result.boxes,
            "anomaly_map": f"maps/{name}.npy", "class_map": f"maps/{name}.classes.png",
            "class_names": list(classes), "extra": extra}


def _clear(out: Path) -> None:
    """Remove what an earlier predict wrote into `out` (only its own files and folders)."""
    for name in ("predictions.jsonl", "predict.json", "meta.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("maps", "overlays"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def check_out(out: Path, run: dict, overwrite: bool) -> None:
    """Resume only the same run; refuse another model's or other options' predictions unless `overwrite`."""
    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(f"--out {out}: not a folder")
    if not any(out.iterdir()):
        return
    manifest = out / "predict.json"
    saved = read_json(manifest) if manifest.is_file() else None
    if saved == run:
        return
    if not overwrite:
        if saved is None:
            raise RunError(f"{out}: not empty and not written by predict; use another --out")
        what = [k for k in ("model", "options") if saved.get(k) != run.get(k)] or ["format"]
        detail = []
        if "model" in what and isinstance(saved.get("model"), dict):
            detail = [k for k in run["model"] if saved["model"].get(k) != run["model"][k]]
        elif "options" in what and isinstance(saved.get("options"), dict):
            detail = [k for k in run["options"] if saved["options"].get(k) != run["options"][k]]
        names = detail or what
        raise RunError(f"{out}: holds predictions of another model, class list or options "
                       f"({', '.join(names)} {'differs' if len(names) == 1 else 'differ'}); use another --out or "
                       "--overwrite")
    if saved is None:
        raise RunError(f"{out}: not empty and not written by predict; --overwrite only replaces predict's output")
    _clear(out)


class PredictionsWriter:
    """Appends predictions.jsonl lines in input order, each after its image's files (see the module docstring)."""

    def __init__(self, out: Path, classes: list[str], threshold: float, writers: int, bound: int, progress=None):
        self.out, self.classes, self.threshold, self.bound, self.progress = out, classes, threshold, bound, progress
        self.written = self.defective = 0
        self._pool = ThreadPoolExecutor(writers, thread_name_prefix="predict-writer") if writers else None
        self._pending: collections.deque = collections.deque()  # futures (writers) or finished lines, in order
        self._fh = open(out / "predictions.jsonl", "a", encoding="utf-8")

    def _finish(self, record: dict, maps: np.ndarray) -> dict:
        zero_outside(maps, record_geometry(record))
        try:
            return _write_files(self.out, record, summarize(maps, self.classes, self.threshold), self.classes)
        except OSError as e:  # a full disk, a permission, a folder in the way: the user's to fix, then rerun
            raise RunError(f"{e.filename or self.out}: cannot write ({e.strerror or e}); what was written is "
                           "kept, rerun to continue") from e

    def add(self, record: dict, maps: np.ndarray) -> None:
        """One image's (K, 512, 512) class maps (zeroed outside its content box here)."""
        self._pending.append(self._pool.submit(self._finish, record, maps) if self._pool
                             else self._finish(record, maps))
        self._drain(keep=self.bound if self._pool else 0)

    def _drain(self, keep: int) -> None:
        """Append the finished lines at the head, waiting until at most `keep` images are left pending."""
        pending = self._pending
        while pending and (len(pending) > keep or not hasattr(pending[0], "result") or pending[0].done()):
            head = pending.popleft()
            line = head.result() if hasattr(head, "result") else head
            self._fh.write(json.dumps(line, sort_keys=True) + "\n")
            self._fh.flush()
            self.written += 1
            self.defective += line["label"] == "defective"
            if self.progress:
                self.progress()

    def close(self, raise_failure: bool = True) -> None:
        """Wait for the writers and append a line for every image whose files are complete, then raise the
        first image's failure among the rest (unless the caller is already failing)."""
        try:
            failed = [h for h in self._pending if hasattr(h, "result") and h.exception() is not None]
            finished = [h for h in self._pending if h not in failed]
            self._pending.clear()
            self._pending.extend(finished)
            self._drain(keep=0)
            if failed and raise_failure:
                raise failed[0].exception()
        finally:
            if self._pool:
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._fh.close()

    def __enter__(self) -> "PredictionsWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(raise_failure=exc_type is None)
