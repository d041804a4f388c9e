"""Stage 2's data path and training recipe: the light-columns selection reads the chosen rows' pixels only
(Parquet and WebDataset), the selection's memory does not grow with the pool, augmentation keeps image and
masks registered and is exact under resume and across loader worker counts, the LR schedule's values, and
`--device`/`--dtype` on `train-seg` and `predict` (bfloat16 on the CPU)."""

from __future__ import annotations

import io
import json
import tarfile
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from imdd_models.cli import app
from imdd_models.data import iter_raw
from imdd_models.data.columns import iter_light, read_rows
from imdd_models.segmentation import augment
from imdd_models.segmentation.config import get_config
from imdd_models.segmentation.dataset import select
from imdd_models.segmentation.schedule import lr_factor, set_lr
from seg_fixtures import write_diffusion_folder, write_seg_shards


@pytest.fixture(scope="module")
def setup(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-data")
    return {"diffusion": write_diffusion_folder(tiny_components, root / "stage1"),
            "data": write_seg_shards(root / "data", per_class=6), "root": root}


def train(setup, out, *args, expect=0, data=None):
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(setup["diffusion"]), "--data",
                                      str(data or setup["data"]), "--config", "tiny", "--out", str(out), "--json",
                                      *args])
    assert result.exit_code == expect, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _tar_from(parquet_folder, out):
    """The same records as a WebDataset tar shard (the `imdd-build shard --format webdataset` members)."""
    (out / "webdataset").mkdir(parents=True)
    with tarfile.open(out / "webdataset" / "train-00000.tar", "w") as tar:
        for row in iter_raw(parquet_folder):
            members = {"png": row["image_bytes"], "mask.png": row["mask_bytes"] or b"",
                       "class_mask.png": row["class_mask_bytes"] or b"",
                       "json": json.dumps({k: v for k, v in row.items() if not k.endswith("_bytes")}).encode(),
                       "txt": row["caption"].encode()}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{row['key']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


def _grown_pool(folder, out, times: int, row_group: int = 8):
    """`folder`'s records and `times - 1` renamed copies of its defective ones, in small row groups."""
    table = pq.read_table(next((folder / "data").glob("*.parquet")))
    rows = table.to_pylist()
    grown = list(rows)
    for t in range(1, times):
        grown += [{**r, "key": f"{r['key']}-copy{t}"} for r in rows if r["defect_types"]]
    (out / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(grown, schema=table.schema), out / "data" / "train-00000-of-00001.parquet",
                   row_group_size=row_group)
    return out


@pytest.mark.parametrize("layout", ["parquet", "webdataset"])
def test_light_columns_then_chosen_rows_give_the_readers_rows(setup, tmp_path, layout):
    data = setup["data"] if layout == "parquet" else _tar_from(setup["data"], tmp_path / "wds")
    light = list(iter_light(data, "train", "label=defective"))
    raw = list(iter_raw(data, "train", "label=defective"))
    assert [r["key"] for r in light] == [r["key"] for r in raw] and len(light) == 21
    assert not any(k.endswith("_bytes") or k in ("image", "mask", "class_mask", "caption") for r in light for k in r)
    assert [r["defect_types"] for r in light] == [r["defect_types"] for r in raw]
    chosen = [light[9], light[2], light[17]]
    rows = read_rows(data, "train", [r["_loc"] for r in chosen])
    by_key = {r["key"]: r for r in raw}
    assert [r["key"] for r in rows] == [r["key"] for r in chosen]
    for row in rows:
        ref = by_key[row["key"]]
        assert row["image_bytes"] == ref["image_bytes"] and row["mask_bytes"] == ref["mask_bytes"]
        assert row["class_mask_bytes"] == ref["class_mask_bytes"] and row["caption"] == ref["caption"]


def test_selection_memory_does_not_grow_with_the_pool(setup, tmp_path):
    def peak(folder):
        tracemalloc.start()
        tset = select(str(folder), "train", None, "scratch,hole", 3, 7)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, tset

    small, s = peak(_grown_pool(setup["data"], tmp_path / "n", 1))
    big, b = peak(_grown_pool(setup["data"], tmp_path / "8n", 8))
    assert s.per_class == b.per_class == {"scratch": 3, "hole": 3} and s.normal == b.normal == 3
    assert max(len(s.rows), len(b.rows)) <= 3 * 2 + 3 and b.stats.read > 6 * s.stats.read
    image_bytes = sum(len(r["image_bytes"]) for r in s.rows) / len(s.rows)
    # 8x the pool (~140 more encoded images) costs less than 3 images' worth of extra peak memory
    assert big - small < 3 * image_bytes, (small, big, image_bytes)


def test_augmentation_keeps_image_and_masks_registered():
    rng = np.random.default_rng(0)
    cmask = np.zeros((512, 512), np.uint8)
    cmask[100:180, 60:300] = 1
    cmask[300:420, 350:460] = 2
    image = Image.fromarray(np.where(cmask[..., None] > 0, 255, 0).astype(np.uint8).repeat(3, 2), "RGB")
    record = {"key": "k", "image": image, "mask": Image.fromarray((cmask > 0).astype(np.uint8) * 255, "L"),
              "class_mask": Image.fromarray(cmask, "L"), "geometry": {"x": 0}}
    aug = augment.settings(get_config("paper"), "on")
    views = [augment.draw_view(aug, 3, step, 0) for step in range(40)]
    assert any(v.flip for v in views) and any(not v.flip for v in views)
    assert any(v.scale > 1.05 for v in views) and any(v.scale < 0.95 for v in views)
    for view in views:
        out = augment.apply(record, view)
        img, mask, cls = (np.asarray(out[k]) for k in ("image", "mask", "class_mask"))
        assert img.shape == (512, 512, 3) and mask.shape == cls.shape == (512, 512)
        assert ((cls > 0) == (mask > 0)).all()  # the masks move together exactly
        fg, on = img[..., 0] > 127, mask > 0
        assert (fg & on).sum() / max(1, (fg | on).sum()) > 0.95, view  # and the image with them
        assert set(np.unique(cls)) <= {0, 1, 2}  # class indices never blended
        if view.flip and view.scale == 1.0:
            assert (cls == cmask[:, ::-1]).all()
    flipped = augment.apply(record, augment.View(flip=True))
    assert (np.asarray(flipped["class_mask"]) == cmask[:, ::-1]).all() and "geometry" not in flipped
    assert augment.draw_view(aug, 3, 7, 0) == augment.draw_view(aug, 3, 7, 0) != augment.draw_view(aug, 3, 8, 0)
    assert augment.settings(get_config("paper"), "flip")["scale_max"] == 1.0
    assert augment.settings(get_config("paper"), "off")["hflip"] == 0.0


def test_schedule_warms_up_then_decays_in_steps():
    cfg = get_config("paper")
    assert cfg["warmup_steps"] == 500 and cfg["lr_milestones"] == [0.889, 0.963] and cfg["lr_gamma"] == 0.1
    h = 10_000
    assert lr_factor(0, cfg, h) == pytest.approx(0.001)
    assert lr_factor(250, cfg, h) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(500, cfg, h) == 1.0 and lr_factor(8889, cfg, h) == 1.0
    assert lr_factor(8890, cfg, h) == pytest.approx(0.1) and lr_factor(9629, cfg, h) == pytest.approx(0.1)
    assert lr_factor(9630, cfg, h) == pytest.approx(0.01) and lr_factor(20_000, cfg, h) == pytest.approx(0.01)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert set_lr(opt, 5e-5, 9000, cfg, h) == pytest.approx(5e-6) and opt.param_groups[0]["lr"] == pytest.approx(5e-6)
    assert get_config("tiny")["warmup_steps"] == 5


def test_augmented_resume_and_worker_counts_give_the_same_weights(setup, tmp_path):
    common = ["--classes", "scratch,hole", "--batch-size", "3", "--augment", "on", "--schedule-steps", "6"]
    s = train(setup, tmp_path / "straight", *common, "--max-steps", "4", "--num-workers", "2")
    assert s["augment"] == "on" and s["num_workers"] == 2 and s["schedule_steps"] == 6
    train(setup, tmp_path / "resumed", *common, "--max-steps", "2", "--num-workers", "0")
    train(setup, tmp_path / "resumed", *common, "--max-steps", "4", "--num-workers", "1", "--resume")
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(str(train(setup, tmp_path / "plain", *common[:-4], "--augment", "off", "--schedule-steps", "6",
                            "--max-steps", "4")["out"] + "/model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the augmentation did change what was learned
    err = train(setup, tmp_path / "resumed", *common[:-3], "flip", "--schedule-steps", "6", "--max-steps", "5",
                "--resume", expect=2)
    assert "different settings (augment)" in err["error"]


def test_bfloat16_on_the_cpu_for_train_seg_and_predict(setup, tmp_path):
    s = train(setup, tmp_path / "m", "--classes", "scratch,hole", "--max-steps", "2", "--device", "cpu",
              "--dtype", "bfloat16", "--num-workers", "0")
    assert s["dtype"] == "bfloat16" and s["device"] == "cpu" and s["steps"] == 2
    assert json.loads((tmp_path / "m" / "seg_config.json").read_text())["run"]["dtype"] == "bfloat16"
    preds = {}
    for dtype in ("bfloat16", "float32"):
        result = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "m"), "--classes", "scratch,stain",
                                          "--data", str(setup["data"]), "--limit", "2", "--out",
                                          str(tmp_path / f"p-{dtype}"), "--device", "cpu", "--dtype", dtype, "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["dtype"] == dtype and summary["device"] == "cpu" and summary["images"] == 2
        line = json.loads((tmp_path / f"p-{dtype}" / "predictions.jsonl").read_text().splitlines()[0])
        preds[dtype] = np.load(tmp_path / f"p-{dtype}" / line["anomaly_map"])
    assert np.isfinite(preds["bfloat16"]).all() and not np.array_equal(preds["bfloat16"], preds["float32"])
    assert np.abs(preds["bfloat16"] - preds["float32"]).mean() < 0.1  # the same model, rounded features
    err = train(setup, tmp_path / "x", "--dtype", "int8", expect=2)
    assert err["error"].startswith("--dtype 'int8'")
    if not torch.cuda.is_available():
        err = train(setup, tmp_path / "x", "--device", "cuda", expect=2)
        assert "no CUDA device" in err["error"]
    err = train(setup, tmp_path / "x", "--num-workers", "-1", expect=2)
    assert "--num-workers" in err["error"]
    err = train(setup, tmp_path / "x", "--augment", "sideways", expect=2)
    assert "--augment 'sideways'" in err["error"]


def test_the_feature_cache_serves_augmented_views_workers_and_dtypes(setup, tmp_path):
    cache = tmp_path / "cache"
    common = ["--classes", "scratch", "--batch-size", "4", "--max-steps", "6", "--augment", "flip",
              "--cache-features", str(cache), "--num-workers", "2"]
    first = train(setup, tmp_path / "a", *common)
    assert first["samples_seen"] == 22 and first["cache_hits"] < 22  # 11 records: batches 4, 4, 3 per epoch
    views = {p.name for p in cache.rglob("*.safetensors")}
    assert 11 < len(views) <= 22 and len(views) == 22 - first["cache_hits"]  # each (record, flip) view: one entry
    second = train(setup, tmp_path / "b", *common)
    assert second["cache_hits"] == 22  # every view of the second run was cached
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # computed-then-stored and read features are the same
    third = train(setup, tmp_path / "c", *common, "--dtype", "bfloat16")
    added = len(list(cache.rglob("*.safetensors"))) - len(views)
    assert added == len(views) and third["cache_hits"] == first["cache_hits"]  # other dtype: its own entries


def test_normal_shots_sets_how_many_normal_records_go_with_the_shots(setup, tmp_path):
    def normal_keys(tset):
        return {r["key"] for r in tset.rows if r["label"] == "normal"}

    default = select(str(setup["data"]), "train", None, "scratch,hole", 2, 7)  # 3 normal records in the pool
    more = select(str(setup["data"]), "train", None, "scratch,hole", 2, 7, normal_shots=3)
    none = select(str(setup["data"]), "train", None, "scratch,hole", 2, 7, normal_shots=0)
    assert (default.normal, more.normal, none.normal) == (2, 3, 0)
    assert len(normal_keys(default)) == 2 and len(normal_keys(more)) == 3 and not normal_keys(none)
    assert normal_keys(default) < normal_keys(more)  # the same seeded ranking, more of it
    defective = {r["key"] for r in default.rows} - normal_keys(default)
    assert defective == {r["key"] for r in none.rows} and more.per_class == default.per_class
    many = select(str(setup["data"]), "train", None, "scratch,hole", 2, 7, normal_shots=1000)
    assert many.short.get("normal") == many.normal == 3 and "normal" not in default.short
    for args, msg in ((["--shots", "2", "--normal-shots", "-1"], "--normal-shots must be >= 0 (got -1)"),
                      (["--normal-shots", "2"], "--normal-shots: only with --shots")):
        result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(setup["diffusion"]), "--data",
                                          str(setup["data"]), "--config", "tiny", "--out", str(tmp_path / "m"),
                                          "--max-steps", "1", *args])
        assert result.exit_code == 2 and msg in result.output, result.output
    assert not (tmp_path / "m").exists()
