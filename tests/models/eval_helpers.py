"""Predictions folders written by hand (no model) for the evaluation tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from imdd_models.data import iter_raw


def run_evaluate(*args, expect=0):
    """`imdd-models evaluate ARGS --json` in process: (its JSON line, the result)."""
    from typer.testing import CliRunner

    from imdd_models.cli import app
    result = CliRunner().invoke(app, ["evaluate", *map(str, args), "--json"])
    assert result.exit_code == expect, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def write_folder(folder: Path, lines: list[dict], maps: dict[str, np.ndarray] | None = None,
                 meta: dict | None = None) -> Path:
    """`predictions.jsonl` from `lines` (dicts, written as given) and `.npy` maps by relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, array in (maps or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / rel, array)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def mask_of(row: dict) -> np.ndarray:
    """The record's ground truth as a boolean 512x512 array (all False without a mask)."""
    if not row.get("mask_bytes"):
        return np.zeros((512, 512), bool)
    return np.asarray(Image.open(io.BytesIO(row["mask_bytes"])).convert("L")) > 127


def records(data: Path, split: str = "test") -> list[dict]:
    return list(iter_raw(str(data), split))


def class_truth(row: dict) -> np.ndarray:
    """The record's class ground truth as indices into its defect_types + 1 (class_mask, or the mask of its
    one defect type; zeros otherwise)."""
    if row.get("class_mask_bytes") and row.get("has_class_mask", True) is not False:
        return np.asarray(Image.open(io.BytesIO(row["class_mask_bytes"])), dtype=np.uint8)
    if len(row.get("defect_types") or []) == 1:
        return mask_of(row).astype(np.uint8)
    return np.zeros((512, 512), np.uint8)


def oracle_lines(rows: list[dict]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """What a perfect model predicts: right labels and types, exact boxes, maps equal to the masks, class maps
    equal to the class ground truth."""
    lines, maps = [], {}
    for i, row in enumerate(rows):
        defective = row["label"] == "defective"
        rel, cls = f"maps/{i:04d}.npy", f"classes/{i:04d}.npy"
        maps[rel] = mask_of(row).astype(np.float32)
        maps[cls] = class_truth(row)
        lines.append({"key": row["key"], "image_score": 1.0 if defective else 0.0, "label": row["label"],
                      "defect_type": row["defect_types"][0] if defective else None,
                      "class_scores": {t: 1.0 for t in row["defect_types"]},
                      "boxes": [{**b, "score": 0.9} for b in row["boxes"]], "anomaly_map": rel,
                      "class_map": cls, "class_names": list(row["defect_types"])})
    return lines, maps
