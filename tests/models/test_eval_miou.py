"""mIoU and per-class IoU of `class_map` predictions (the predictions contract's optional class map), the
completeness and map checks of `evaluate`, and the split recorded by `predict` in meta.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.eval_helpers import run_evaluate, class_truth, oracle_lines, records, write_folder


run = run_evaluate


@pytest.fixture(scope="module")
def test_rows(demo_shards):
    return records(demo_shards)


def _noisy_class_maps(rows, folder, seed=0):
    """A mediocre segmenter: each line names its classes in its own order, paints wrong classes, a class that
    is nowhere in the ground truth ("dent") and the letterbox padding; half the maps are PNG, half .npy."""
    rng = np.random.default_rng(seed)
    vocabulary = ["hole", "stain", "scratch", "crack", "dent"]
    lines, named = [], {}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cls").mkdir()
    for i, row in enumerate(rows):
        truth = class_truth(row)
        truth_names = np.array(["", *row["defect_types"]], dtype=object)[truth]  # "" = background
        pred = truth_names.copy()
        for _ in range(3):  # rectangles of a random class (or background)
            y, x = rng.integers(0, 480, 2)
            h, w = rng.integers(8, 60, 2)
            pred[y:y + h, x:x + w] = rng.choice(["", *vocabulary])
        pred[:, :6] = "hole"  # the left edge: padding on letterboxed records, never scored there
        order = list(rng.permutation(vocabulary))
        index = {"": 0, **{n: j + 1 for j, n in enumerate(order)}}
        array = np.vectorize(index.get)(pred).astype(np.uint8)
        rel = f"cls/{i:03d}" + (".png" if i % 2 else ".npy")
        if i % 2:
            Image.fromarray(array, "L").save(folder / rel)
        else:
            np.save(folder / rel, array)
        named[row["key"]] = pred
        lines.append({"key": row["key"], "label": row["label"], "class_map": rel, "class_names": order})
    (folder / "predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder, named


def _reference_iou(rows, named) -> dict[str, float]:
    """Per-class IoU by its definition on name arrays: |truth = c and pred = c| / |truth = c or pred = c|
    summed over the split, inside each record's content box; classes present in the truth only."""
    inter, union, present = {}, {}, set()
    for row in rows:
        x0, y0, x1, y1 = row["geometry"]["content_box"]
        truth = np.array(["", *row["defect_types"]], dtype=object)[class_truth(row)][y0:y1, x0:x1]
        pred = named[row["key"]][y0:y1, x0:x1]
        for c in {*row["defect_types"], "hole", "stain", "scratch", "crack", "dent"}:
            inter[c] = inter.get(c, 0) + int(((truth == c) & (pred == c)).sum())
            union[c] = union.get(c, 0) + int(((truth == c) | (pred == c)).sum())
            if (truth == c).any():
                present.add(c)
    return {c: inter[c] / union[c] for c in sorted(present)}


def test_miou_matches_the_definition_with_seen_and_unseen(demo_shards, test_rows, tmp_path):
    folder, named = _noisy_class_maps(test_rows, tmp_path / "p")
    reference = _reference_iou(test_rows, named)
    assert set(reference) == {"hole", "stain", "scratch", "crack"}
    out, _ = run("--predictions", folder, "--data", demo_shards, "--classes-seen", "hole,scratch",
                 "--markdown", tmp_path / "r.md")
    assert out["per_class_iou"] == pytest.approx(reference, abs=1e-12)
    assert out["miou"] == pytest.approx(np.mean(list(reference.values())), abs=1e-12)
    assert 0.2 < out["miou"] < 0.99  # neither perfect nor useless
    assert out["miou_seen"] == pytest.approx((reference["hole"] + reference["scratch"]) / 2, abs=1e-12)
    assert out["miou_unseen"] == pytest.approx((reference["stain"] + reference["crack"]) / 2, abs=1e-12)
    assert out["seen"]["miou"] == out["miou_seen"] and out["by_class"]["crack"]["miou"] == reference["crack"]
    assert out["counts"]["miou"]["images"] == 24 and out["counts"]["miou"]["classes"] == 4
    # the padding is not scored: a letterboxed record exists, and its painted left edge did not count
    assert out["counts"]["miou"]["pixels"] < 24 * 512 * 512
    md = (tmp_path / "r.md").read_text()
    assert "| Open-vocabulary segmentation |" in md and "mIoU" in md
    assert f"| crack | {reference['crack']:.3f} | no |" in md
    assert f"mIoU seen: {out['miou_seen']:.3f}, unseen: {out['miou_unseen']:.3f}" in md


def test_oracle_class_maps_score_one_and_no_class_map_is_null(demo_shards, test_rows, tmp_path):
    lines, maps = oracle_lines(test_rows)
    out, _ = run("--predictions", write_folder(tmp_path / "o", lines, maps), "--data", demo_shards, "--no-breakdown")
    assert out["miou"] == 1.0 and out["background_iou"] == 1.0
    bare = [{k: v for k, v in line.items() if k not in ("class_map", "class_names")} for line in lines]
    out, _ = run("--predictions", write_folder(tmp_path / "b", bare, maps), "--data", demo_shards, "--no-breakdown")
    assert out["miou"] is None and out["counts"]["miou"]["no_prediction"] == 24


def test_mask_is_the_class_truth_of_a_one_type_record(demo_shards, test_rows):
    """Without a class_mask, the binary mask of a record with exactly one defect type is that type's truth."""
    from imdd_models.evaluation.classiou import truth_names
    from imdd_models.evaluation.scoring import _item
    row = next(r for r in test_rows if r["label"] == "defective")
    bare = _item({**row, "class_mask_bytes": None, "has_class_mask": False}, None)
    array, names = truth_names(bare, set())
    assert names == row["defect_types"] and (array == class_truth(row)).all() and array.any()
    two = _item({**row, "class_mask_bytes": None, "defect_types": ["hole", "crack"]}, None)
    assert truth_names(two, set()) is None  # a binary mask of two types says nothing per class


def test_every_referenced_map_is_checked(demo_shards, test_rows, tmp_path):
    lines, maps = oracle_lines(test_rows)
    n_normal = sum(r["label"] == "normal" for r in test_rows)
    normal_at = next(i for i, r in enumerate(test_rows) if r["label"] == "normal")
    # a garbage map on a line --where leaves out: no metric reads it, it is still an error
    garbage = write_folder(tmp_path / "g", lines, {**maps, lines[normal_at]["anomaly_map"]: np.zeros((3, 3))})
    out, _ = run("--predictions", garbage, "--data", demo_shards, "--where", "label=defective", expect=2)
    assert "shape (3, 3)" in out["error"] and test_rows[normal_at]["key"] in out["error"]
    assert n_normal > 0
    defective_at = next(i for i, r in enumerate(test_rows) if r["label"] == "defective")
    short = [dict(line) for line in lines]
    short[defective_at]["class_names"] = []
    out, _ = run("--predictions", write_folder(tmp_path / "i", short, maps), "--data", demo_shards, expect=2)
    assert "class map has index 1 but class_names has 0 name(s)" in out["error"]
    rgb = tmp_path / "rgb"
    write_folder(rgb, [{**lines[0], "class_map": "c.png"}, *lines[1:]], maps)
    Image.new("RGB", (512, 512)).save(rgb / "c.png")
    out, _ = run("--predictions", rgb, "--data", demo_shards, expect=2)
    assert "mode RGB" in out["error"] and "c.png" in out["error"]
    unnamed = write_folder(tmp_path / "u", [{**lines[0], "class_names": None}, *lines[1:]], maps)
    out, _ = run("--predictions", unnamed, "--data", demo_shards, expect=2)
    assert "class_names: required with class_map" in out["error"]


def test_split_recorded_by_predict_is_the_default(demo_shards, tmp_path):
    train = records(demo_shards, "train")
    lines, maps = oracle_lines(train)
    folder = write_folder(tmp_path / "p", lines, maps, meta={"model": "m", "split": "train"})
    out, result = run("--predictions", folder, "--data", demo_shards, "--no-breakdown")
    assert (out["split"], out["split_from"], out["records"], out["missing"]) == ("train", "meta.json", 18, 0)
    assert "split: train (recorded by predict in meta.json)" in result.stderr
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown", "--split", "test", expect=2)
    assert "not a record of the evaluated split" in out["error"]  # --split wins over meta.json
    every = records(demo_shards, None)
    lines, maps = oracle_lines(every)
    folder = write_folder(tmp_path / "all", lines, maps, meta={"split": None})
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown")
    assert (out["split"], out["records"], out["predicted"]) == (None, 42, 42)
    lines, maps = oracle_lines(records(demo_shards))
    folder = write_folder(tmp_path / "nometa", lines, maps)
    out, _ = run("--predictions", folder, "--data", demo_shards, "--no-breakdown")
    assert (out["split"], out["split_from"]) == ("test", "default")
