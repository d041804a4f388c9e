"""`calibrate`: predict's image threshold chosen on held-out records, and used by predict without --threshold.

The threshold choice is checked on scores with a known best cut; the end-to-end path checks that calibration
scores records exactly as predict does (predict's labels on the calibration split reproduce the calibration's
accuracy), that predict picks the file up (and says so in meta.json), and that a calibration made for other
weights or another ensemble setting is not used silently.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from imdd_build.errors import RunError
from imdd_models.cli import app
from imdd_models.segmentation.calibrate import CALIBRATION, calibrate, choose_threshold, resolve_threshold
from imdd_models.segmentation.predict import model_identity, predict
from imdd_models.segmentation.train import TrainOptions, train_seg
from seg_fixtures import write_diffusion_folder, write_train_validation_set, write_two_class_set

from .conftest import invoke


def test_the_threshold_separates_scores_that_can_be_separated():
    scores = [0.1, 0.2, 0.3, 0.6, 0.7, 0.9]
    defective = [False, False, False, True, True, True]
    r = choose_threshold(scores, defective)
    assert 0.3 < r["threshold"] < 0.6 and r["f1"] == 1.0 and r["accuracy"] == 1.0
    # not a grid: the cut lands between the two closest scores of different labels
    r = choose_threshold([0.50, 0.5001, 0.9], [False, True, True])
    assert 0.50 < r["threshold"] < 0.5001


def test_f1_and_accuracy_objectives_choose_differently_when_they_disagree():
    # F1 ignores true negatives: it keeps the three mid-scored defective records at the price of four normal
    # ones scored higher still; accuracy gives those three up to call the four normal records right
    scores = [0.6] * 3 + [0.9] * 2 + [0.1] * 10 + [0.7] * 4
    defective = [True] * 5 + [False] * 14
    f1 = choose_threshold(scores, defective, "f1")
    acc = choose_threshold(scores, defective, "accuracy")
    assert 0.1 < f1["threshold"] < 0.6 and f1["recall"] == 1.0 and f1["f1"] == pytest.approx(10 / 14)
    assert 0.7 < acc["threshold"] < 0.9 and acc["accuracy"] == pytest.approx(16 / 19) and acc["recall"] == 0.4


def test_one_label_only_cannot_calibrate():
    with pytest.raises(RunError, match="all normal"):
        choose_threshold([0.1, 0.2], [False, False])
    with pytest.raises(RunError, match="objective"):
        choose_threshold([0.1, 0.2], [False, True], "auroc")


@pytest.fixture(scope="module")
def model(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    diffusion = write_diffusion_folder(tiny_components, root / "stage1")
    data = write_train_validation_set(root / "data", (4, 4, 5))
    out = root / "model"
    train_seg(TrainOptions(diffusion=diffusion, data=str(data), config="tiny", out=out, classes="scratch,hole",
                           max_steps=20, save_every=1000, num_workers=0))
    return {"root": root, "data": data, "out": out, "diffusion": diffusion}


def _label_accuracy(folder) -> float:
    lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    truth = {k: "normal" if "/good/" in k or "/normal/" in k else "defective" for k in (p["key"] for p in lines)}
    return float(np.mean([p["label"] == truth[p["key"]] for p in lines]))


def test_predict_uses_the_calibration_and_reproduces_its_accuracy(model):
    result = calibrate(model["out"], str(model["data"]), "validation", objective="accuracy", use_clip=False)
    saved = json.loads((model["out"] / CALIBRATION).read_text())
    assert saved["threshold"] == result["threshold"] and saved["records"] == 12 and saved["defective"] == 8
    assert saved["weights_sha256"] == model_identity(model["out"])["weights_sha256"] and saved["ensemble_on"] is False
    out = model["root"] / "pred-cal"
    summary = predict(model["out"], "scratch,hole", out, data=str(model["data"]), split="validation", use_clip=False)
    assert summary["threshold"] == result["threshold"] and summary["threshold_source"] == "calibration"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["threshold"] == result["threshold"] and meta["threshold_source"] == "calibration"
    # predict's labels on the calibration split give exactly the accuracy calibrate measured: same scores
    assert _label_accuracy(out) == pytest.approx(result["accuracy"])
    # and the chosen threshold does at least as well there as the old fixed 0.5
    fixed = model["root"] / "pred-fixed"
    summary = predict(model["out"], "scratch,hole", fixed, data=str(model["data"]), split="validation",
                      use_clip=False, threshold=0.5)
    assert summary["threshold_source"] == "option"
    assert _label_accuracy(out) >= _label_accuracy(fixed)


def test_a_calibration_for_other_weights_or_ensemble_is_not_used(model, tmp_path):
    identity = model_identity(model["out"])
    (tmp_path / CALIBRATION).write_text(json.dumps({"threshold": 0.2, "weights_sha256": "0" * 64,
                                                    "ensemble_on": False}))
    t, source, why = resolve_threshold(tmp_path, None, identity, False)
    assert (t, source) == (0.5, "default") and "other weights" in why
    (tmp_path / CALIBRATION).write_text(json.dumps({"threshold": 0.2, "weights_sha256": identity["weights_sha256"],
                                                    "ensemble_on": True}))
    t, source, why = resolve_threshold(tmp_path, None, identity, False)
    assert (t, source) == (0.5, "default") and "CLIP ensemble" in why
    assert resolve_threshold(tmp_path, None, identity, True)[:2] == (0.2, "calibration")
    assert resolve_threshold(tmp_path, 0.7, identity, True)[:2] == (0.7, "option")
    # another class list: still used, with a warning naming both (synonyms of the same classes count as equal)
    (tmp_path / CALIBRATION).write_text(json.dumps({"threshold": 0.2, "weights_sha256": identity["weights_sha256"],
                                                    "ensemble_on": True, "classes": ["scratch", "hole"]}))
    assert resolve_threshold(tmp_path, None, identity, True, ["hole", "scratch"]) == (0.2, "calibration", None)
    t, source, why = resolve_threshold(tmp_path, None, identity, True, ["scratch", "hole", "stain"])
    assert (t, source) == (0.2, "calibration") and "scratch,hole,stain" in why


def test_train_seg_calibrates_on_the_validation_split_and_skips_without_one(model, tmp_path):
    args = ["train-seg", "--diffusion", str(model["diffusion"]), "--config", "tiny", "--classes", "scratch,hole",
            "--max-steps", "2", "--num-workers", "0"]
    summary = invoke(app, *args, "--data", str(model["data"]), "--out", str(tmp_path / "a"))
    cal = summary["calibration"]
    assert cal["split"] == "validation" and cal["records"] == 12 and 0 <= cal["threshold"] <= 1
    assert json.loads((tmp_path / "a" / CALIBRATION).read_text())["threshold"] == cal["threshold"]
    train_only = write_two_class_set(tmp_path / "train-only", per_class=3, normals=2, seed=0, split="train")
    summary = invoke(app, *args, "--data", str(train_only), "--out", str(tmp_path / "b"))
    assert "skipped" in summary["calibration"] and not (tmp_path / "b" / CALIBRATION).exists()
    summary = invoke(app, *args, "--data", str(model["data"]), "--out", str(tmp_path / "c"), "--calibrate", "off")
    assert summary["calibration"] == {"skipped": "--calibrate off"} and not (tmp_path / "c" / CALIBRATION).exists()


def test_calibrate_command_errors_are_one_line(model):
    bad = invoke(app, "calibrate", "--model", str(model["out"]), "--data", str(model["data"]), "--split", "nope",
                 expect=2)
    assert "nope" in bad["error"]
    bad = invoke(app, "calibrate", "--model", str(model["out"]), "--data", str(model["data"]), "--objective", "x",
                 expect=2)
    assert "objective" in bad["error"]


def test_calibrate_refuses_the_records_the_model_trained_on(model, tmp_path):
    """`--help` promised "never the training split", and nothing checked it: the model's folder now records what
    it trained on. The train split (or every split) of that data is refused; another split, or other data, is not."""
    saved = model["out"] / CALIBRATION
    before = saved.read_bytes() if saved.is_file() else None
    for split in ("train", "all"):
        bad = invoke(app, "calibrate", "--model", str(model["out"]), "--data", str(model["data"]), "--split", split,
                     expect=2)
        assert bad["error"].startswith(f"--split {split}: the model trained on split 'train' of {model['data']}"), bad
    assert (saved.read_bytes() if saved.is_file() else None) == before  # nothing written
    copy = tmp_path / "copy"  # the same records under another name are other data as far as the check knows
    shutil.copytree(model["data"], copy)
    ok = invoke(app, "calibrate", "--model", str(model["out"]), "--data", str(copy), "--split", "validation",
                "--classes", "scratch,hole")
    assert ok["split"] == "validation" and ok["warnings"] == []


def test_calibrate_classes_are_checked_as_predict_checks_them(model):
    empty = invoke(app, "calibrate", "--model", str(model["out"]), "--data", str(model["data"]), "--classes", "",
                   expect=2)
    assert empty["error"] == "--classes: give at least one class name"  # it fell back to the trained classes
    near = invoke(app, "calibrate", "--model", str(model["out"]), "--data", str(model["data"]), "--classes",
                  "scratch,crak")
    assert near["warnings"] == ["--classes: 'crak' is not a taxonomy term but close to 'crack'; did you mean "
                                "'crack'?"]
