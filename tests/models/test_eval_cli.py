"""`imdd-models evaluate` end to end: predictions folders written by hand against `imdd-build demo` shards."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from models.eval_helpers import run_evaluate, mask_of, oracle_lines, records, write_folder
from imdd_models.cli import app
from imdd_models.evaluation.detection import BoxImage, box_map

METRICS = ("image_auroc", "pixel_auroc", "aupro", "iou", "map50", "map50_95", "accuracy", "miou")


run = run_evaluate


@pytest.fixture(scope="module")
def test_rows(demo_shards):
    return records(demo_shards)


def test_oracle_predictions_score_perfectly_with_breakdowns(demo_shards, test_rows, tmp_path):
    lines, maps = oracle_lines(test_rows)
    folder = write_folder(tmp_path / "oracle", lines, maps, meta={"model": "oracle", "checkpoint": "none"})
    out, _ = run("--predictions", folder, "--data", demo_shards, "--classes-seen", "hole,scratch",
                 "--markdown", tmp_path / "report.md")
    for metric in METRICS:
        assert out[metric] == pytest.approx(1.0), metric
    n_def = sum(r["label"] == "defective" for r in test_rows)
    assert (out["records"], out["predicted"], out["missing"], out["extra"]) == (len(test_rows), len(test_rows), 0, 0)
    assert out["counts"]["image_auroc"] == {"records": 24, "defective": n_def, "normal": 24 - n_def, "no_prediction": 0}
    assert out["counts"]["map50"]["truth_boxes"] == sum(len(r["boxes"]) for r in test_rows)
    assert out["counts"]["accuracy"]["correct"] == 24
    assert set(out["by_source"]) == {"demo"} and out["by_source"]["demo"]["map50"] == pytest.approx(1.0)
    classes = sorted({t for r in test_rows for t in r["defect_types"]})
    assert sorted(out["by_class"]) == classes
    assert out["classes_seen"] == ["hole", "scratch"] and out["classes_unseen"] == sorted(set(classes) - {"hole", "scratch"})
    hole_and_scratch = sum(bool({"hole", "scratch"} & set(r["defect_types"])) for r in test_rows)
    assert out["seen"]["counts"]["image_auroc"]["defective"] == hole_and_scratch
    assert out["unseen"]["counts"]["image_auroc"]["defective"] == n_def - hole_and_scratch
    assert out["provenance"]["meta"] == {"model": "oracle", "checkpoint": "none"}
    md = (tmp_path / "report.md").read_text()
    assert "| Task | Dataset / metric | Value |" in md and "| Defect detection |" in md
    assert f"{n_def} defective" in md and out["provenance"]["predictions_sha256"] in md and '"model": "oracle"' in md
    assert "### Seen (hole, scratch) and unseen" in md


def _noisy_folder(rows, folder, seed=0):
    """A mediocre model: noisy scores and maps, jittered boxes, some wrong labels."""
    rng = np.random.default_rng(seed)
    lines, maps = [], {}
    for i, row in enumerate(rows):
        defective = row["label"] == "defective"
        rel = f"m/{i}.npy"
        maps[rel] = (mask_of(row) * 0.4 + rng.integers(0, 8, (512, 512)) / 10).astype(np.float32)
        boxes = [{**b, "x0": b["x0"] + float(rng.integers(-10, 10)), "score": float(rng.random())} for b in row["boxes"]]
        boxes.append({"label": "hole", "score": float(rng.random()), "x0": 0.0, "y0": 0.0, "x1": 40.0, "y1": 40.0})
        lines.append({"key": row["key"], "image_score": float(rng.integers(0, 4) + defective),
                      "label": ["normal", "defective"][int(rng.random() < 0.6)],
                      "defect_type": str(rng.choice(["hole", "scratch", "stain", "crack"])),
                      "boxes": boxes, "anomaly_map": rel})
    return write_folder(folder, lines, maps), lines, maps


def test_scores_match_independent_computations(demo_shards, test_rows, tmp_path):
    folder, lines, maps = _noisy_folder(test_rows, tmp_path / "noisy")
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown")
    assert "by_source" not in out and "seen" not in out
    by_key = {line["key"]: line for line in lines}
    truth = [r["label"] == "defective" for r in test_rows]
    assert out["image_auroc"] == pytest.approx(roc_auc_score(truth, [by_key[r["key"]]["image_score"] for r in test_rows]))
    # the pixel set: every record here (masks on all defective ones, and their source's normals), padding cut
    scores, gts = [], []
    for row in test_rows:
        x0, y0, x1, y1 = row["geometry"]["content_box"]
        scores.append(maps[by_key[row["key"]]["anomaly_map"]][y0:y1, x0:x1].ravel())
        gts.append(mask_of(row)[y0:y1, x0:x1].ravel())
    scores, gts = np.concatenate(scores), np.concatenate(gts)
    assert out["counts"]["pixel_auroc"]["pixels"] == scores.size < 24 * 512 * 512  # letterboxed records exist
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(gts, scores), abs=1e-12)
    assert out["iou"] == pytest.approx(((scores >= 0.5) & gts).sum() / ((scores >= 0.5) | gts).sum())
    assert 0 < out["aupro"] < 1
    right = sum((by_key[r["key"]]["label"] == "normal") if r["label"] == "normal" else
                (by_key[r["key"]]["label"] == "defective" and by_key[r["key"]]["defect_type"] in r["defect_types"])
                for r in test_rows)
    assert out["accuracy"] == pytest.approx(right / 24) and out["counts"]["accuracy"]["correct"] == right
    expected = box_map([BoxImage(r["key"], r["boxes"], by_key[r["key"]]["boxes"]) for r in test_rows])
    assert (out["map50"], out["map50_95"]) == (pytest.approx(expected["map50"]), pytest.approx(expected["map50_95"]))
    assert out["map50"] < 1
    # --pixel-bins: the maps here are multiples of 0.1 from 0 to 1.1, so 12 thresholds hit every value
    binned, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown", "--pixel-bins", "12")
    assert binned["pixel_auroc"] == pytest.approx(out["pixel_auroc"], abs=1e-9)
    assert binned["aupro"] == pytest.approx(out["aupro"], abs=1e-9) and binned["iou"] == out["iou"]
    assert binned["counts"]["aupro"]["bins"] == 12
    # the WebDataset copy of the same shards (all-zero mask.png where has_mask is false) scores the same
    tar = demo_shards / "webdataset" / "test-000000.tar"
    from_tar, _ = run("--predictions", folder, "--data", tar, "--no-breakdown")
    assert {m: from_tar[m] for m in METRICS} == {m: out[m] for m in METRICS}
    assert from_tar["counts"] == out["counts"]


def test_missing_records_fail_unless_allow_missing(demo_shards, test_rows, tmp_path):
    """Complete by default: a run that predicted part of the split does not score as if it were complete."""
    lines, maps = oracle_lines(test_rows)
    folder = write_folder(tmp_path / "p", lines[2:], maps)
    out, result = run("--predictions", folder, "--data", demo_shards, "--no-breakdown", expect=2)
    assert out["error"].startswith("2 of 24 record(s) of split 'test' have no prediction")
    assert test_rows[0]["key"] in out["error"] and test_rows[1]["key"] in out["error"]
    assert "--allow-missing" in out["error"] and result.stderr.count("error:") == 1
    out, result = run("--predictions", folder, "--data", demo_shards, "--no-breakdown", "--allow-missing")
    assert (out["missing"], out["predicted"]) == (2, 22)
    assert out["missing_examples"] == [test_rows[0]["key"], test_rows[1]["key"]]
    assert "2 of 24 record(s) have no prediction" in result.stderr
    assert out["counts"]["image_auroc"]["no_prediction"] == 2 and out["counts"]["image_auroc"]["records"] == 22
    assert all(out["counts"][m]["missing"] == 2 for m in METRICS)  # beside every metric
    out, result = run("--predictions", folder, "--data", demo_shards, "--allow-missing", "--strict", expect=2)
    assert "have no prediction" in out["error"]
    # the human table and the Markdown say it beside every metric
    plain = CliRunner().invoke(app, ["evaluate", "--predictions", str(folder), "--data", str(demo_shards),
                                     "--no-breakdown", "--allow-missing", "--markdown", str(tmp_path / "r.md")])
    assert plain.exit_code == 0 and plain.stdout.count("2 of 24 records missing") == len(METRICS)
    assert (tmp_path / "r.md").read_text().count("2 records of the split missing") == len(METRICS)


def test_bad_folders_are_one_error_line(demo_shards, test_rows, tmp_path):
    lines, maps = oracle_lines(test_rows)
    unknown = write_folder(tmp_path / "u", [{**lines[0], "heatmap": "x"}, *lines[1:]], maps)
    out, _ = run("--predictions", unknown, "--data", demo_shards, expect=2)
    assert "unknown field(s) 'heatmap'" in out["error"] and "predictions.jsonl:1" in out["error"]
    nan = write_folder(tmp_path / "n", [*lines[:-1], {**lines[-1], "image_score": float("nan")}], maps)
    out, _ = run("--predictions", nan, "--data", demo_shards, expect=2)
    assert "image_score: nan is not a finite number" in out["error"] and test_rows[-1]["key"] in out["error"]
    shape = write_folder(tmp_path / "s", lines, {**maps, lines[3]["anomaly_map"]: np.zeros((64, 64), np.float32)})
    out, _ = run("--predictions", shape, "--data", demo_shards, "--no-breakdown", expect=2)
    assert "shape (64, 64), expected (512, 512)" in out["error"] and test_rows[3]["key"] in out["error"]
    extra = write_folder(tmp_path / "e", [*lines, {"key": "demo/nowhere/001", "image_score": 0.1}], maps)
    out, _ = run("--predictions", extra, "--data", demo_shards, "--no-breakdown", expect=2)
    assert "'demo/nowhere/001' which is not a record of the evaluated split" in out["error"]
    out, _ = run("--predictions", extra, "--data", demo_shards, "--split", "validation", expect=2)
    assert out["error"] == f"{demo_shards}: no split 'validation'; splits there: test, train; 'all' for every split"
    out, _ = run("--predictions", extra, "--data", demo_shards, "--no-breakdown", "--allow-extra")
    assert out["extra"] == 1 and out["image_auroc"] == pytest.approx(1.0)


def test_partial_predictions_give_nulls_with_counts(demo_shards, test_rows, tmp_path):
    """A model that only scores images: pixel and box metrics are null and say why; defective-only is null too."""
    folder = write_folder(tmp_path / "p", [{"key": r["key"], "image_score": float(r["label"] == "defective")}
                                           for r in test_rows])
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown")
    assert out["image_auroc"] == 1.0
    assert out["pixel_auroc"] is None and out["aupro"] is None and out["iou"] is None
    assert out["counts"]["pixel_auroc"]["no_prediction"] == 24 and out["counts"]["pixel_auroc"]["images"] == 0
    assert out["map50"] is None and out["counts"]["map50"]["no_prediction"] == 24
    assert out["accuracy"] is None and out["counts"]["accuracy"]["no_prediction"] == 24
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown", "--where", "label=defective")
    assert out["image_auroc"] is None and out["counts"]["image_auroc"]["normal"] == 0
    n_normal = sum(r["label"] == "normal" for r in test_rows)  # their predictions: left out by --where, not extra
    assert (out["records"], out["outside_where"], out["extra"]) == (24 - n_normal, n_normal, 0)


def test_class_split_file(demo_shards, test_rows, tmp_path):
    lines, maps = oracle_lines(test_rows)
    folder = write_folder(tmp_path / "p", lines, maps)
    split_file = tmp_path / "split.yaml"
    split_file.write_text("base: [hole, stain]\nnovel: [crack]\n")
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown", "--class-split", split_file)
    assert out["class_split"] == {"base": ["hole", "stain"], "novel": ["crack"]}
    assert (out["classes_seen"], out["classes_unseen"]) == (["hole", "stain"], ["crack"])
    assert out["unseen"]["counts"]["image_auroc"]["defective"] == sum("crack" in r["defect_types"] for r in test_rows)
    assert out["unseen"]["counts"]["map50"]["classes"] == 1 and out["unseen"]["map50"] == pytest.approx(1.0)
    out, _ = run("--predictions", folder, "--data", demo_shards, "--class-split", split_file,
                 "--classes-seen", "hole", expect=2)
    assert "not both" in out["error"]


def test_webdataset_placeholder_masks_are_not_ground_truth(demo_shards):
    """A WebDataset sample of a record without a mask still has mask.png (all zero): has_mask decides, in the
    reader (which gives no mask bytes) and again in scoring (for rows read some other way)."""
    import tarfile

    from imdd_models.data import iter_raw
    from imdd_models.evaluation.scoring import _item
    tar = demo_shards / "webdataset" / "test-000000.tar"
    rows = list(iter_raw(str(tar)))
    normal = next(r for r in rows if r["label"] == "normal")
    with tarfile.open(tar) as tf:
        stand_in = tf.extractfile(f"{normal['key']}.mask.png").read()
    assert normal["mask_bytes"] is None and normal["has_mask"] is False
    assert _item({**normal, "mask_bytes": stand_in}, None).mask_bytes is None
    defective = next(r for r in rows if r["label"] == "defective")
    assert _item(defective, None).mask_bytes == defective["mask_bytes"]
    assert _item({**defective, "has_mask": False}, None).mask_bytes is None  # a defective record without a mask


def test_a_named_class_no_record_carries_is_a_warning_and_markdown_paths_are_checked_first(demo_shards, test_rows,
                                                                                          tmp_path):
    lines, maps = oracle_lines(test_rows)
    folder = write_folder(tmp_path / "oracle", lines, maps, meta={"model": "oracle", "checkpoint": "none"})
    out, result = run("--predictions", folder, "--data", demo_shards, "--classes-seen", "hole,scrach")
    # the seen group held normal records alone and nothing said why
    assert out["warnings"] == ["--classes-seen: no record of the split has the defect type 'scrach'; did you mean "
                               "'scratch'?"]
    assert "did you mean 'scratch'?" in result.stderr.replace("\n", "")
    assert run("--predictions", folder, "--data", demo_shards, "--classes-seen", "hole,scratch")[0]["warnings"] == []
    (tmp_path / "afile").write_text("")
    for target, message in ((tmp_path, f"--markdown {tmp_path}: a folder; give a file path"),
                            (tmp_path / "afile" / "r.md", f"--markdown {tmp_path / 'afile' / 'r.md'}: its folder "
                                                          f"{tmp_path / 'afile'}: not a folder")):
        err, _ = run("--predictions", folder, "--data", demo_shards, "--markdown", target, expect=2)
        assert err["error"] == message


def test_the_markdown_provenance_survives_backticks_in_meta(demo_shards, test_rows, tmp_path):
    lines, maps = oracle_lines(test_rows)
    meta = {"model": "oracle", "ensemble": {"reason": "no tower (see `imdd-models components --clip-text`)"}}
    folder = write_folder(tmp_path / "oracle", lines, maps, meta=meta)
    run("--predictions", folder, "--data", demo_shards, "--markdown", tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    block = text[text.index("  ```json\n"):]
    assert "`imdd-models components --clip-text`" in block and block.rstrip().endswith("```")
