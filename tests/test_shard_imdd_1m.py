"""`load_dataset("imdd-1m")` after a bare `imdd-build shard` (issue 15 item 3), with the class mask
column and tile records in the shards, byte-identical on a rebuild."""

import hashlib
import io
import json
from pathlib import Path

import datasets
import numpy as np
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from fixtures import noise_image, save, write_mvtec, write_visa_raw
from imdd_build.cli import app
from imdd_build.writers import webdataset_features


def run(*args):
    """`imdd-build ARGS --json` in the current folder, exactly as typed (no --workspace, no --out)."""
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_strips(root):
    """One 1600x256 defective strip (tiled) and a normal one."""
    save(noise_image((1600, 256), seed=1), root / "dent/s.png")
    m = np.zeros((256, 1600), np.uint8)
    m[20:60, 40:90] = 255
    save(Image.fromarray(m, "L"), root / "dent/s_mask.png")
    save(noise_image((1600, 256), seed=2), root / "good/n.png")


def build(folder, data):
    run("ingest", "mvtec", "--root", str(data / "mvtec"), "--workers", "1")
    run("ingest", "visa", "--root", str(data / "visa"), "--workers", "1")
    run("ingest", "folder", "--root", str(data / "strips"), "--license", "CC-BY-4.0", "--domain", "steel_strip",
        "--source-id", "strips", "--resize-mode", "tile", "--workers", "1")
    run("caption")
    return run("shard", "--workers", "1")


def source_data(tmp_path: Path) -> Path:
    """MVTec, VisA (raw) and steel-strip folders under tmp_path/data, as downloaded."""
    data = tmp_path / "data"
    write_mvtec(data / "mvtec")
    write_visa_raw(data / "visa")
    write_strips(data / "strips")
    return data


def test_load_dataset_imdd_1m_after_a_bare_shard(tmp_path, monkeypatch):
    data = source_data(tmp_path)
    monkeypatch.delenv("IMDD_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    summary = build(tmp_path, data)
    assert summary["out"] == "imdd-1m" and (tmp_path / "imdd-1m/README.md").is_file()
    assert summary["has_class_masks"] and summary["image_ext"] == "jpg"
    ds = datasets.load_dataset("imdd-1m")  # exactly as the card writes it, from this folder
    rows = [row for split in ds.values() for row in split]
    assert len(rows) == summary["records"]
    tiles = [r for r in rows if r["parent"]]
    assert tiles and all(r["key"].startswith(r["parent"] + "/t") for r in tiles)
    assert {r["label"] for r in tiles} == {"normal", "defective"}
    for r in rows:
        if r["has_class_mask"]:
            mask, classes = np.asarray(r["mask"]), np.asarray(r["class_mask"])
            assert np.array_equal(classes > 0, mask > 0) and classes.max() <= len(r["defect_types"])
            assert sorted(json.loads(r["attributes"]["instances"])) == sorted(
                r["defect_types"][k - 1] for k in np.unique(classes) if k)
        else:
            assert r["class_mask"] is None
    # WebDataset: the stored image bytes (PNG and JPEG) under one member name, plus class_mask.png
    manifest = json.loads((tmp_path / "imdd-1m/manifest.json").read_text())
    assert manifest["image_bytes"] == "stored"
    tars = [str(tmp_path / "imdd-1m" / s["path"]) for s in manifest["shards"] if s["format"] == "webdataset"]
    formats = set()
    for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        formats.add(Image.open(io.BytesIO(s["jpg"])).format)
        assert {"jpg", "mask.png", "class_mask.png", "json", "txt"} <= set(s)
    assert formats == {"PNG", "JPEG"}
    # datasets reads the tars with the features the shard declares (the README of a tar-only output
    # declares them too): no inference from a tar's first samples, where `parent` is null and set later
    assert manifest["webdataset_features"] == webdataset_features("jpg", True, True)
    features = datasets.Features(datasets.DatasetInfo._from_yaml_dict(
        {"features": manifest["webdataset_features"]}).features)  # as the README shows
    web = datasets.load_dataset("webdataset", data_files={"train": tars}, features=features)["train"]
    web_rows = {row["__key__"]: row for row in web}
    assert set(web_rows) == {r["key"] for r in rows}
    assert {web_rows[r["key"]]["json"]["parent"] for r in tiles} == {r["parent"] for r in tiles}
    assert {row["jpg"].format for row in web_rows.values()} == {"PNG", "JPEG"}
    for row in web_rows.values():
        assert row["jpg"].size == (512, 512) and row["json"]["key"] == row["__key__"]
        if row["json"]["has_class_mask"]:
            assert np.array_equal(np.asarray(row["class_mask.png"]) > 0, np.asarray(row["mask.png"]) > 0)
    only = run("shard", "--out", "wds", "--format", "webdataset")
    loaded = datasets.load_dataset("wds")
    assert sum(split.num_rows for split in loaded.values()) == only["records"]
    assert {row["json"]["parent"] for split in loaded.values() for row in split} >= {r["parent"] for r in tiles}


def test_tiles_and_class_masks_shard_to_the_same_bytes(tmp_path, monkeypatch):
    data = source_data(tmp_path)
    monkeypatch.delenv("IMDD_WORKSPACE", raising=False)
    digests = []
    for n in range(2):
        (tmp_path / f"run{n}").mkdir()
        monkeypatch.chdir(tmp_path / f"run{n}")
        build(tmp_path / f"run{n}", data)
        out = tmp_path / f"run{n}" / "imdd-1m"
        digests.append({p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert digests[0] == digests[1] and any(p.endswith(".tar") for p in digests[0])
