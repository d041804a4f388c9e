"""Shards read back with the real consumers: datasets.load_dataset (also streaming) and webdataset."""

import hashlib
import json

import datasets
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from fixtures import write_mvtec, write_visa_raw
from imdd_build.geometry import mask_to_original
from imdd_build.record import Geometry
from imdd_build.shard import parse_size


@pytest.fixture
def built(tmp_path, cli):
    write_mvtec(tmp_path / "mvtec")
    write_visa_raw(tmp_path / "visa")
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    cli("ingest", "visa", "--root", str(tmp_path / "visa"), "--workers", "1")
    cli("caption")
    out = tmp_path / "shards"
    summary = cli("shard", "--out", str(out))
    return out, summary, tmp_path


def test_load_dataset_returns_splits_with_pixels_and_metadata(built):
    out, summary, src = built
    assert summary["splits"] == {"test": 10, "train": 9} and summary["uncaptioned"] == 0
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "test"} and ds["train"].num_rows == 9 and ds["test"].num_rows == 10
    assert isinstance(ds["test"].features["image"], datasets.Image)
    assert isinstance(ds["test"].features["mask"], datasets.Image)
    for row in ds["test"]:
        assert row["image"].size == (512, 512) and row["image"].mode == "RGB"
        assert row["caption"] and row["key"] and row["source"] in ("mvtec", "visa")
        if row["label"] == "defective":
            assert row["mask"].size == (512, 512) and row["boxes"] and row["defect_types"]
            # masks mapped back through the stored geometry match the original masks
            g = Geometry(**row["geometry"])
            back = mask_to_original(np.asarray(row["mask"]), g, row["orig_width"], row["orig_height"]) > 0
            original = np.asarray(Image.open(src / row["source"] / row["mask_source_path"])) > 0
            assert (back & original).sum() / (back | original).sum() >= 0.98
        else:
            assert row["mask"] is None and row["defect_types"] == []


def test_streaming_load_matches(built):
    out, _, _ = built
    streamed = datasets.load_dataset(str(out), streaming=True)
    keys = [row["key"] for row in streamed["train"]]
    assert keys == datasets.load_dataset(str(out))["train"]["key"] and len(keys) == 9


def test_webdataset_reads_every_sample_with_the_same_members(built):
    out, summary, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    tars = [s for s in manifest["shards"] if s["format"] == "webdataset"]
    assert {s["path"] for s in tars} == {"webdataset/train-000000.tar", "webdataset/test-000000.tar"}
    for shard in manifest["shards"]:
        assert hashlib.sha256((out / shard["path"]).read_bytes()).hexdigest() == shard["sha256"]
    ext = summary["image_ext"]
    assert ext == "jpg"  # MVTec PNG + VisA JPEG mixed: one extension for all, the stored bytes under it
    urls = [str(out / s["path"]) for s in tars]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"))
    assert len(samples) == 19
    for s in samples:
        assert {k for k in s if not k.startswith("__")} == {ext, "mask.png", "class_mask.png", "json", "txt"}
        assert s[ext].size == (512, 512) and s["mask.png"].size == (512, 512)
        meta = s["json"]
        assert meta["key"] == s["__key__"] and s["txt"] == meta["caption"]
        assert meta["has_mask"] == (meta["label"] == "defective")


def test_same_inputs_give_byte_identical_shards_whatever_the_worker_counts(tmp_path, cli, workspace):
    from conftest import Cli
    write_mvtec(tmp_path / "mvtec")
    digests = []
    for n in range(2):
        other = Cli(tmp_path / f"ws{n}")
        other("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", str(n + 1))
        other("caption")
        other("shard", "--out", str(tmp_path / f"out{n}"), "--max-shard-size", "200KB", "--workers", str(n + 1))
        files = sorted(p for p in (tmp_path / f"out{n}").rglob("*") if p.is_file())
        digests.append({p.relative_to(tmp_path / f"out{n}").as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in files})
    assert digests[0] == digests[1]
    assert sum(1 for p in digests[0] if p.endswith(".parquet")) > 2  # the size cap split the splits


def test_reshard_removes_stale_files_and_size_limits(tmp_path, cli):
    write_mvtec(tmp_path / "mvtec")
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    out = tmp_path / "o"
    small = cli("shard", "--out", str(out), "--max-shard-size", "100KB", "--format", "parquet")
    assert small["shards"] > 2 and small["uncaptioned"] == 9
    big = cli("shard", "--out", str(out), "--format", "parquet")
    assert big["shards"] == 2 and len(big["removed_stale"]) == small["shards"]  # every name changed (-of-N)
    assert len(list((out / "data").glob("*.parquet"))) == 2
    assert datasets.load_dataset(str(out))["train"].num_rows == 5


def test_webdataset_only_output_loads_with_datasets(tmp_path, cli):
    write_visa_raw(tmp_path / "visa")
    cli("ingest", "visa", "--root", str(tmp_path / "visa"), "--workers", "1")
    cli("caption")
    summary = cli("shard", "--out", str(tmp_path / "o"), "--format", "webdataset", "--order", "key")
    assert summary["image_ext"] == "jpg"
    ds = datasets.load_dataset(str(tmp_path / "o"))
    assert ds["test"].num_rows == 6 and ds["train"].num_rows == 4
    row = ds["test"][0]
    assert row["jpg"].size == (512, 512) and row["json"]["key"] == row["__key__"]


def test_parse_size():
    assert parse_size("500MB") == 500_000_000 and parse_size("1GiB") == 2**30 and parse_size("2048") == 2048
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("lots")
