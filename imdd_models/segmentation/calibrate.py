"""`calibrate`: the image-score threshold of a trained model, chosen on held-out records (anomalib's adaptive
threshold).

`predict` calls an image defective when its score (the anomaly map's maximum) reaches a threshold. A fixed 0.5
means nothing for a head trained a few hundred steps: on real Magnetic Tile it called nearly every test image
defective (accuracy 0.02). `calibrate` runs the model exactly as `predict` does (same classes, ensemble and
letterbox handling) over a labelled split that training did not use (`validation` by default), and picks the
threshold that maximises the F1 score of "defective" on it (`objective f1`, anomalib's `F1AdaptiveThreshold`),
or the share of right normal/defective labels (`objective accuracy`). Candidates are the midpoints between
consecutive distinct scores (and one below the lowest, one above the highest), so the choice does not depend on
a grid; ties go to the lower threshold.

The result is `calibration.json` in the model folder, tied to the weights it was computed for (their sha256)
and to the ensemble setting. `predict` without `--threshold` uses it when both match, else 0.5 with a warning;
`--threshold` always wins. `train-seg` calibrates at its end when the data has a validation split.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from imdd_build.errors import RunError

from ..data import ReadStats, iter_records
from ..data.explain import no_records_message
from ..jsonfile import read_json
from .dataset import requested_names

CALIBRATION = "calibration.json"
DEFAULT_THRESHOLD = 0.5
OBJECTIVES = ("f1", "accuracy")


def choose_threshold(scores, defective, objective: str = "f1") -> dict:
    """The threshold over `scores` (image scores) that best separates `defective` (bools) by `objective`.

    Returns {"threshold", "objective", "value", "f1", "accuracy", "precision", "recall"} at that threshold.
    A split with only one label cannot calibrate: RunError naming it."""
    if objective not in OBJECTIVES:
        raise RunError(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(defective, dtype=bool)
    if s.size == 0:
        raise RunError("calibration: no scored records")
    if y.all() or not y.any():
        raise RunError(f"calibration: the records are all {'defective' if y.any() else 'normal'}; "
                       "a threshold needs both normal and defective records")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    pred = s[None, :] >= cands[:, None]  # (C, N)
    tp = (pred & y).sum(1).astype(np.float64)
    fp = (pred & ~y).sum(1).astype(np.float64)
    fn = (~pred & y).sum(1).astype(np.float64)
    tn = (~pred & ~y).sum(1).astype(np.float64)
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    acc = (tp + tn) / len(s)
    value = f1 if objective == "f1" else acc
    i = int(np.flatnonzero(value == value.max())[0])
    prec = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
    return {"threshold": round(float(np.clip(cands[i], 0.0, 1.0)), 6), "objective": objective,
            "value": round(float(value[i]), 6), "f1": round(float(f1[i]), 6), "accuracy": round(float(acc[i]), 6),
            "precision": round(float(prec), 6), "recall": round(float(tp[i] / y.sum()), 6)}


def read_calibration(model_dir: Path) -> dict | None:
    """The model folder's calibration.json, or None when there is none."""
    path = Path(model_dir) / CALIBRATION
    return read_json(path) if path.is_file() else None


def resolve_threshold(model_dir: Path, threshold: float | None, identity: dict, ensemble_on: bool,
                      classes: list[str] | None = None) -> tuple[float, str, str | None]:
    """(threshold, where it came from: option|calibration|default, a warning or None) for `predict`.

    A calibration made for another class list is still used (image scores are maxima over the classes, so
    extra names only add candidates), with a warning naming both lists."""
    if threshold is not None:
        return float(threshold), "option", None
    cal = read_calibration(model_dir)
    if cal is None:
        return DEFAULT_THRESHOLD, "default", None
    if cal.get("weights_sha256") != identity["weights_sha256"]:
        return DEFAULT_THRESHOLD, "default", (f"{Path(model_dir) / CALIBRATION}: computed for other weights (the "
                                              f"model was trained further); using {DEFAULT_THRESHOLD} - run "
                                              f"`imdd-models calibrate` again")
    if bool(cal.get("ensemble_on")) != bool(ensemble_on):
        state = "with" if cal.get("ensemble_on") else "without"
        return DEFAULT_THRESHOLD, "default", (f"{Path(model_dir) / CALIBRATION}: calibrated {state} the CLIP "
                                              f"ensemble; using {DEFAULT_THRESHOLD} (give --threshold, or calibrate "
                                              f"this way)")
    why = None
    if classes is not None and cal.get("classes") is not None and _names(classes) != _names(cal["classes"]):
        why = (f"{Path(model_dir) / CALIBRATION}: calibrated for classes {','.join(cal['classes'])}, predicting "
               f"{','.join(classes)}; its threshold may not fit (`imdd-models calibrate --classes ...`)")
    return float(cal["threshold"]), "calibration", why


def _names(classes: list[str]) -> set[str]:
    from .vocabulary import canonical_type
    return {canonical_type(c) or c for c in classes}


def calibrate(model_dir: Path, data: str, split: str = "validation", classes_text: str | None = None,
              objective: str = "f1", where: str | None = None, batch_size: int = 4, limit: int | None = None,
              use_clip: bool = True, diffusion: Path | None = None, device: str | None = None,
              dtype: str | None = None, clip_text: Path | None = None, progress=None) -> dict:
    """Score `split` of `data` with the model as `predict` would, choose the threshold, write calibration.json."""
    from . import checkpoint as ckpt
    from .clip_head import clip_unavailable
    from .postprocess import record_geometry, zero_outside
    from .predict import load_model, model_identity

    if objective not in OBJECTIVES:
        raise RunError(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if batch_size < 1:
        raise RunError(f"--batch-size must be >= 1 (got {batch_size})")
    if limit is not None and limit < 1:
        raise RunError(f"--limit must be >= 1 (got {limit})")
    model_dir = Path(model_dir)
    identity = model_identity(model_dir)
    config = ckpt.read_config(model_dir)
    classes = requested_names(classes_text) if classes_text is not None else list(config.get("classes") or [])
    if not classes:
        raise RunError("--classes: give at least one class name")
    _refuse_training_records(config.get("training"), data, split)
    from .vocabulary import near_miss_warnings
    warnings = near_miss_warnings(classes)
    root = Path(diffusion or config["features"]["diffusion"])
    why_not = "--no-clip" if not use_clip else clip_unavailable(root, clip_text)
    stats = ReadStats()
    records = iter_records(data, split, where, stats)
    first = next(records, None)
    if first is None:
        raise RunError(no_records_message(data, split, where))
    seg = load_model(model_dir, diffusion, device, use_clip=why_not is None, dtype=dtype, clip_text=clip_text)
    scores: list[float] = []
    defective: list[bool] = []
    skipped = 0
    batch: list[dict] = []

    def flush() -> None:
        maps = seg.maps([r["image"] for r in batch], classes)
        for record, m in zip(batch, maps):
            zero_outside(m, record_geometry(record))
            scores.append(float(m.max()))
            defective.append(record.get("label") == "defective")
            if progress:
                progress()
        batch.clear()

    for record in itertools.chain([first], records):
        if limit is not None and len(scores) + len(batch) >= limit:
            break
        if record.get("label") not in ("normal", "defective"):
            skipped += 1
            continue
        batch.append(record)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    from ..evaluation.anomaly import roc_auc
    chosen = choose_threshold(scores, defective, objective)
    y = np.asarray(defective)
    result = {**chosen, "image_auroc": roc_auc(np.asarray(scores), y), "split": split, "data": data,
              "where": where, "records": len(scores), "defective": int(y.sum()), "normal": int((~y).sum()),
              "unlabelled_skipped": skipped, "bad": stats.bad, "classes": classes,
              "ensemble_on": why_not is None, "weights_sha256": identity["weights_sha256"],
              "step": identity["step"]}
    ckpt.write_json(model_dir, CALIBRATION, result)
    return {"model": str(model_dir), "calibration": str(model_dir / CALIBRATION), **result, "warnings": warnings}


def _refuse_training_records(training: dict | None, data: str, split: str | None) -> None:
    """A threshold chosen on the records the model trained on is optimistic: the split (or every split) the model
    trained on, of the data it trained on, is refused. Models saved before train-seg recorded this pass."""
    from ..data.sources import data_spec, wanted_split
    if not training or not training.get("data") or data_spec(training["data"]) != data_spec(data):
        return
    trained, asked = wanted_split(training.get("split")), wanted_split(split)
    if trained is None or asked is None or trained == asked:
        where = f"split {trained!r}" if trained else "every split"
        raise RunError(f"--split {split or 'all'}: the model trained on {where} of {data}; calibrate on held-out "
                       "records (another split, e.g. validation, or other data)")


def calibrate_after_training(opts, split: str = "auto", progress=None) -> dict:
    """`train-seg --calibrate`: calibrate the model just written on `split` (auto: validation) of its data, with
    predict's default ensemble. Never fails the run: a split that is missing or holds one label is reported as
    {"skipped": reason} (auto) or {"skipped": ..., "warning": ...} (a split named by the user)."""
    name = "validation" if split.strip().lower() == "auto" else split
    if not opts.split:
        return {"skipped": "trained on every split: no held-out records to calibrate on"}
    if name == opts.split:
        reason = f"--calibrate {name}: the training split; calibrate on held-out records"
        return {"skipped": reason, "warning": reason}
    try:
        result = calibrate(opts.out, opts.data, name, objective="f1", where=opts.where, device=opts.device,
                           dtype=opts.dtype, progress=progress)
    except RunError as exc:
        reason = str(exc)
        return {"skipped": reason} if split.strip().lower() == "auto" else {"skipped": reason, "warning": reason}
    keep = ("threshold", "objective", "value", "f1", "accuracy", "image_auroc", "split", "records", "calibration")
    return {k: result[k] for k in keep}
