"""`imdd-models evaluate` on a predictions folder written by `imdd-models predict` (issue 14's Done-when).

A tiny stage-2 model (a few train-seg steps on generated data, tiny random stage-1 folder) predicts the test
split of `imdd-build demo` shards; the folder passes `validate_predictions` and `evaluate` scores every
metric on exactly the records predicted. The numbers of an untrained model mean nothing: only their range.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from imdd_models.cli import app
from imdd_models.data import iter_raw
from imdd_models.evaluation import validate_predictions
from seg_fixtures import write_diffusion_folder, write_seg_shards

METRICS = ("image_auroc", "pixel_auroc", "aupro", "iou", "map50", "map50_95", "accuracy")


def _invoke(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.stdout[-2000:], result.stderr[-2000:], result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seg_model(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-evaluate")
    diffusion = write_diffusion_folder(tiny_components, root / "stage1")
    train = write_seg_shards(root / "train", per_class=3, classes=("scratch", "hole"))
    _invoke("train-seg", "--diffusion", str(diffusion), "--data", str(train), "--config", "tiny",
            "--out", str(root / "model"), "--classes", "scratch,hole", "--max-steps", "2")
    return root / "model"


def test_evaluate_scores_a_folder_written_by_predict(seg_model, demo_shards, tmp_path):
    rows = list(iter_raw(str(demo_shards), "test"))
    classes = sorted({t for r in rows for t in r["defect_types"]})
    assert {"scratch", "hole"} < set(classes)  # the others are unseen by the model
    preds = tmp_path / "preds"
    s = _invoke("predict", "--model", str(seg_model), "--classes", ",".join(classes), "--data", str(demo_shards),
                "--split", "test", "--out", str(preds))
    assert s["images"] == len(rows) == 24 and s["bad"] == 0
    assert validate_predictions(preds) == []

    out = _invoke("evaluate", "--predictions", str(preds), "--data", str(demo_shards), "--split", "test",
                  "--classes-seen", "hole,scratch")
    assert (out["records"], out["predicted"], out["missing"], out["extra"]) == (24, 24, 0, 0)
    n_def = sum(r["label"] == "defective" for r in rows)
    for metric in METRICS:
        value = out[metric]
        assert value is not None and math.isfinite(value) and 0.0 <= value <= 1.0, (metric, value)
        assert out["counts"][metric]["no_prediction"] == 0, metric
    assert out["counts"]["image_auroc"] == {"records": 24, "defective": n_def, "normal": 24 - n_def,
                                           "no_prediction": 0}
    assert out["counts"]["pixel_auroc"]["images"] == out["counts"]["map50"]["images"] == 24  # demo: all masked
    assert out["counts"]["pixel_auroc"]["regions"] == n_def
    assert out["counts"]["map50"]["truth_boxes"] == sum(len(r["boxes"]) for r in rows)
    assert out["counts"]["accuracy"]["records"] == 24 and 0 <= out["counts"]["accuracy"]["correct"] <= 24
    assert out["classes_unseen"] == sorted(set(classes) - {"hole", "scratch"})
    assert out["provenance"]["meta"]["command"] == "imdd-models predict"
    assert out["provenance"]["meta"]["classes"] == classes
