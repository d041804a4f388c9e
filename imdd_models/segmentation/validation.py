"""`train-seg --eval-every N`: score the model on held-out records during training and keep the best step.

A few-shot head overfits its shots: on real Magnetic Tile the held-out pixel AUROC of the `small` head peaks
after a few hundred steps and falls after (docs/design/benchmarks.md). Every N steps the main process runs the
model over a held-out split (`--eval-split`, default validation; at most `--eval-limit` records) as `predict`
would (learned classifier, noisy-OR class maps, nothing outside the content box) at the model resolution, and
scores the anomaly map's pixel AUROC against the records' masks (normal records are all negatives). A split
without masks is scored by image AUROC (the map's maximum against the labels). Records with a defect type
outside the trained classes are left out (their pixels would be unseen defects, neither defect nor normal).

The frozen features of the held-out records are computed once and kept in CPU memory as float16 (the
extractor is deterministic: fixed noise, no augmentation), so an evaluation costs only the head's forward
passes. That is ~0.1 MiB per record for `small` and ~10 MiB for SD1.5's taps at 512 px (5 GiB at the default
`--eval-limit` 512: lower it there). Evaluation draws no
random numbers (the global RNG state is restored around it), so a run with evaluation reaches the same
weights as one without, and resume stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..data import ReadStats, iter_records
from ..evaluation.anomaly import roc_auc
from . import checkpoint as ckpt
from .postprocess import semantic_maps
from .vocabulary import canonical_type

DEFAULT_LIMIT = 512


@dataclass
class HeldOut:
    """The held-out records' frozen features and what they are scored against."""

    feats: list[dict[str, torch.Tensor]]  # per batch: {tap: (B, C, h, w)} float16 on the CPU
    inside: np.ndarray  # (N, R, R) bool: the content box at the model resolution
    truth: np.ndarray  # (N, R, R) bool: defect pixels
    labels: np.ndarray  # (N,) bool: defective
    has_pixels: bool  # any record with a mask: pixel AUROC, else image AUROC
    records: int
    left_out: int  # records with a defect type outside the trained classes

    @property
    def metric(self) -> str:
        return "pixel_auroc" if self.has_pixels else "image_auroc"


def content_mask(box, side: int) -> np.ndarray:
    """(side, side) bool: a 512-canvas content box (x0, y0, x1, y1; None = the whole canvas) at `side` pixels,
    every cell the box touches included."""
    inside = np.zeros((side, side), dtype=bool)
    box = box or (0, 0, 512, 512)
    x0, y0 = (int(v * side // 512) for v in box[:2])
    x1, y1 = (max(a + 1, -(-int(v) * side // 512)) for a, v in zip((x0, y0), box[2:]))
    inside[y0:y1, x0:x1] = True
    return inside


def _mask(record: dict, side: int) -> np.ndarray | None:
    mask = record.get("mask") if record.get("has_mask", True) is not False else None
    if mask is None:
        return None
    small = mask.convert("L").resize((side, side), Image.BILINEAR)
    return np.asarray(small) >= 128


def load_held_out(data: str, split: str, where: str | None, classes: list[str], extractor, batch_size: int,
                  limit: int | None = DEFAULT_LIMIT) -> HeldOut | None:
    """Read up to `limit` labelled records of `split` and extract their features once; None when there are none
    usable (no such split, or every record unlabelled or of an untrained type)."""
    trained = set(classes)
    side = extractor.resolution
    stats = ReadStats()
    records = []
    left_out = 0
    for record in iter_records(data, split, where, stats):  # a split --data lacks yields no records
        if limit is not None and len(records) >= limit:
            break
        if record.get("label") not in ("normal", "defective"):
            continue
        types = [canonical_type(t) or t for t in record.get("defect_types") or []]
        if any(t not in trained for t in types):
            left_out += 1
            continue
        records.append(record)
    if not records:
        return None
    feats, inside, truth, labels = [], [], [], []
    has_pixels = False
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        feats.append({k: v.half().cpu() for k, v in extractor([r["image"] for r in chunk]).items()})
        for r in chunk:
            inside.append(content_mask((r.get("geometry") or {}).get("content_box"), side))
            m = _mask(r, side)
            defective = r.get("label") == "defective"
            has_pixels |= m is not None and defective
            truth.append(m if m is not None and defective else np.zeros((side, side), dtype=bool))
            labels.append(defective)
    if not has_pixels and len(set(labels)) < 2:
        return None  # no defect pixels and one label only (normal records alone): no AUROC to select a step by
    return HeldOut(feats, np.stack(inside), np.stack(truth), np.asarray(labels), has_pixels, len(records),
                   left_out)


@torch.no_grad()
def score(model, held: HeldOut, class_text: torch.Tensor) -> float | None:
    """The held-out metric (pixel or image AUROC) of `model` now; None when it is undefined (one label)."""
    rng = torch.get_rng_state()
    was_training = model.training
    model.eval()
    try:
        maps = []
        side = held.inside.shape[-1]
        for feats in held.feats:
            out = model({k: v.to(class_text.device).float() for k, v in feats.items()}, class_text)
            maps.append(semantic_maps(out["masks"][-1], out["logits"][-1], side).amax(1).cpu().numpy())
        anomaly = np.concatenate(maps) * held.inside
    finally:
        model.train(was_training)
        torch.set_rng_state(rng)
    if held.has_pixels:
        return roc_auc(anomaly[held.inside].astype(np.float64), held.truth[held.inside])
    return roc_auc(anomaly.reshape(len(anomaly), -1).max(1).astype(np.float64), held.labels)


BEST = "best.safetensors"  # the best held-out step's weights, beside the run's checkpoint


def evaluate_step(out, model, held: HeldOut, class_text: torch.Tensor, trainer: dict) -> None:
    """Score the held-out records now; a new best step's weights go to best.safetensors (before the checkpoint
    of this step is written, so the state on disk always agrees with it)."""
    value = score(model, held, class_text)
    trainer["eval"].append({"step": trainer["step"], held.metric: None if value is None else round(value, 6)})
    best = trainer.get("best")
    if value is not None and (best is None or value > best["value"]):
        trainer["best"] = {"step": trainer["step"], "value": round(value, 6)}
        ckpt.save_weights(out, {k: v.detach() for k, v in model.state_dict().items()}, None, name=BEST)


def eval_summary(held: HeldOut, trainer: dict, every: int, split: str) -> dict:
    """The `eval` block of train-seg's summary: the history and the selected step."""
    best = trainer.get("best") or {}
    return {"metric": held.metric, "every": every, "split": split, "records": held.records,
            "left_out": held.left_out, "history": trainer["eval"], "selected_step": best.get("step"),
            "selected_value": best.get("value")}
