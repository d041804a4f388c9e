"""The predictions folder format: every bad input is a problem naming the file, line, key and field."""

from __future__ import annotations

import numpy as np
import pytest

from models.eval_helpers import write_folder
from imdd_models.evaluation import (PredictionError, load_anomaly_map, read_predictions, scan_predictions,
                                    validate_predictions)

GOOD = {"key": "a", "image_score": 0.5, "label": "defective", "defect_type": "hole",
        "class_scores": {"hole": 0.7}, "boxes": [{"label": "hole", "score": 0.8, "x0": 1, "y0": 2, "x1": 30, "y1": 40}],
        "anomaly_map": "maps/a.npy"}


def test_a_valid_folder(tmp_path):
    folder = write_folder(tmp_path / "p", [GOOD, {"key": "b"}], {"maps/a.npy": np.zeros((512, 512), np.float32)},
                          meta={"model": "tiny"})
    assert validate_predictions(folder) == []
    preds = read_predictions(folder)
    assert set(preds.predictions) == {"a", "b"}
    b = preds.predictions["b"]  # absent fields read as null / empty
    assert b.image_score is None and b.label is None and b.boxes is None and b.anomaly_map is None
    assert preds.predictions["a"].boxes[0]["score"] == 0.8
    assert preds.provenance()["meta"] == {"model": "tiny"} and len(preds.sha256) == 64
    assert load_anomaly_map(folder, preds.predictions["a"]).dtype == np.float32


@pytest.mark.parametrize("line, expected", [
    ({**GOOD, "imag_score": 1.0}, "unknown field(s) 'imag_score'"),
    ({**GOOD, "image_score": float("nan")}, "image_score: nan is not a finite number"),
    ({**GOOD, "image_score": "high"}, "image_score: expected a number"),
    ({**GOOD, "class_scores": {"hole": float("inf")}}, "class_scores['hole']: inf is not a finite number"),
    ({**GOOD, "class_scores": {"hole": None}}, "class_scores['hole']: expected a number, got null"),
    ({**GOOD, "label": "bad"}, "label: 'bad' is not one of normal, defective"),
    ({**GOOD, "boxes": [{"label": "hole", "x0": 1, "y0": 2, "x1": 3, "y1": 4}]}, "missing field(s) score"),
    ({**GOOD, "boxes": [{"label": "hole", "score": 1, "x0": 5, "y0": 2, "x1": 3, "y1": 4}]}, "x1 < x0"),
    ({**GOOD, "boxes": [{**GOOD["boxes"][0], "w": 3}]}, "unknown field(s) w"),
    ({**GOOD, "anomaly_map": "maps/a.png"}, "expected a relative path to a .npy file"),
    ({"image_score": 1.0}, "field 'key' must be a non-empty string"),
])
def test_bad_lines_are_named(tmp_path, line, expected):
    folder = write_folder(tmp_path / "p", [line], {"maps/a.npy": np.zeros((512, 512), np.float32)})
    problems = validate_predictions(folder)
    assert len(problems) == 1 and expected in problems[0], problems
    assert "predictions.jsonl:1" in problems[0]
    with pytest.raises(PredictionError, match="predictions.jsonl:1"):
        read_predictions(folder)


@pytest.mark.parametrize("array, expected", [
    (np.zeros((256, 256), np.float32), "shape (256, 256), expected (512, 512)"),
    (np.zeros((1, 512, 512), np.float32), "shape (1, 512, 512)"),
    (np.zeros((512, 512), np.uint8), "dtype uint8, expected float32"),
    (np.full((512, 512), np.nan, np.float32), "262144 NaN or infinite value(s)"),
])
def test_bad_maps_are_named(tmp_path, array, expected):
    folder = write_folder(tmp_path / "p", [GOOD], {"maps/a.npy": array})
    problems = validate_predictions(folder)
    assert len(problems) == 1 and expected in problems[0] and "a.npy" in problems[0] and "'a'" in problems[0]
    assert validate_predictions(folder, check_maps=False) == []  # reading alone does not open maps


def test_folder_level_problems(tmp_path):
    assert "no predictions.jsonl" in validate_predictions(tmp_path)[0]
    folder = write_folder(tmp_path / "p", [{"key": "a"}, {"key": "a"}, {"key": "c", "anomaly_map": "../x.npy"}])
    (folder / "predictions.jsonl").write_text((folder / "predictions.jsonl").read_text() + "{not json\n")
    problems = scan_predictions(folder, check_maps=True).problems
    assert any("duplicate key 'a' (first on line 1)" in p for p in problems)
    assert any("leaves the predictions folder" in p for p in problems)
    assert any("predictions.jsonl:4: not valid JSON" in p for p in problems)
    with pytest.raises(PredictionError, match=r"and 2 more problem"):
        read_predictions(folder)
    missing_map = write_folder(tmp_path / "q", [GOOD])
    assert "anomaly map file not found" in validate_predictions(missing_map)[0]
