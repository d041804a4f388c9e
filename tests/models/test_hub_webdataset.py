"""WebDataset-only datasets read through `datasets.load_dataset` (the Hub path) give the rows the tars give.

The folders are written by the real pipeline (`imdd-build shard --format webdataset` on the demo workspace),
so they hold only `webdataset/*.tar` (+ README with the declared features, manifest.json); a copy of the tars
alone (no README) makes `datasets` infer the features from the first samples.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imdd_build.cli import app as build_app
from imdd_models.components import load_components
from imdd_models.data import iter_records, resolve, shard_rows
from imdd_models.data.sources import _hub_shards
from imdd_models.data.stream import StreamConfig
from imdd_models.diffusion.batches import make_loader

BYTES = ("image_bytes", "mask_bytes", "class_mask_bytes")


@pytest.fixture(scope="module")
def wds_only(demo_shards, tmp_path_factory) -> Path:
    """`imdd-build shard --format webdataset` of the demo workspace: tars, README.md, manifest.json only."""
    out = tmp_path_factory.mktemp("wds-only") / "imdd"
    result = CliRunner().invoke(build_app, ["--workspace", str(demo_shards.parent), "shard", "--out", str(out),
                                            "--format", "webdataset", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert not (out / "data").exists() and len(list((out / "webdataset").glob("*.tar"))) == 2
    return out


@pytest.fixture(scope="module")
def bare_tars(wds_only, tmp_path_factory) -> Path:
    """The same tars alone at the top of a folder: no README features, so `datasets` infers them."""
    out = tmp_path_factory.mktemp("bare")
    for tar in (wds_only / "webdataset").glob("*.tar"):
        shutil.copy(tar, out / tar.name)
    return out


def _same(a, b) -> bool:
    """Equal, floats up to the 10 decimals `datasets`' Json feature keeps (see sources.py)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def _rows(source) -> list[dict]:
    return [row for shard in source.shards for row in shard_rows(shard)]


@pytest.mark.parametrize("folder", ["wds_only", "bare_tars"])
def test_hub_rows_equal_the_tar_rows(folder, wds_only, request):
    spec = request.getfixturevalue(folder)
    for split, count in (("train", 18), ("test", 24)):
        hub = _hub_shards(str(spec), split)
        assert {s.kind for s in hub.shards} == {"hub"}
        got = _rows(hub)
        want = _rows(resolve(wds_only, split, fmt="webdataset"))  # the local tars, read by _tar_groups
        assert [r["key"] for r in got] == [r["key"] for r in want] and len(got) == count
        for a, b in zip(got, want):
            assert a.keys() == b.keys(), a["key"]
            for col in BYTES:
                assert a[col] == b[col], (a["key"], col)
            assert a["caption"] == b["caption"] and a["caption"], a["key"]
            meta = {k: v for k, v in a.items() if k not in BYTES}
            assert _same(meta, {k: v for k, v in b.items() if k not in BYTES}), a["key"]
            assert (a["split"], a["label"], a["defect_types"], a["boxes"]) == (split, b["label"], b["defect_types"],
                                                                                b["boxes"])
        # the stand-in all-zero masks of records without one are read as no mask, the real ones kept
        assert all((r["mask_bytes"] is not None) == r["has_mask"] for r in got)
        assert all((r["class_mask_bytes"] is not None) == r["has_class_mask"] for r in got)
    assert any(r["mask_bytes"] and r["class_mask_bytes"] for r in got)


def test_a_folder_of_bare_tars_resolves_through_datasets(bare_tars, tmp_path):
    source = resolve(bare_tars, "test")
    assert source.kind == "images" and [s.kind for s in source.shards] == ["hub"]
    records = list(iter_records(source))
    assert len(records) == 24 and all(r["image"].size == (512, 512) and r["caption"] for r in records)
    assert any(r["mask"] is not None and r["mask"].getbbox() for r in records)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no shards"):  # a folder nothing can load keeps its message
        resolve(empty)


def _rewrite_last_json(tar_path: Path, extra: dict) -> str:
    """Add `extra` to the .json of the tar's last sample (same members and order otherwise); its key."""
    with tarfile.open(tar_path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar if info.isfile()]
    last = next(i for i in range(len(members) - 1, -1, -1) if members[i][0].name.endswith(".json"))
    info, data = members[last]
    members[last] = (info, json.dumps({**json.loads(data), **extra}, sort_keys=True).encode())
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return json.loads(members[last][1])["key"]


def test_json_keys_first_seen_after_the_first_samples_are_kept(bare_tars, tmp_path):
    # Without declared features `datasets` infers the .json as a struct from a tar's first 5 samples and
    # drops keys those lack; the reader keeps the .json as text, so nothing is lost.
    folder = tmp_path / "late-keys"
    shutil.copytree(bare_tars, folder)
    extra = {"source_attributes": {"lot": "A7", "line": 3}, "inspector": "ml"}
    key = _rewrite_last_json(folder / "train-000000.tar", extra)
    rows = {r["key"]: r for r in _rows(resolve(folder, "train"))}
    assert len(rows) == 18
    assert rows[key]["source_attributes"] == extra["source_attributes"] and rows[key]["inspector"] == "ml"
    assert all("inspector" not in r for k, r in rows.items() if k != key)


def test_training_batches_from_a_hub_webdataset_have_images_and_captions(wds_only, tiny_components):
    comps = load_components(tiny_components)
    source = _hub_shards(str(wds_only), "test")
    captions = {r["key"]: r["caption"] for r in _rows(resolve(wds_only, "test", fmt="webdataset"))}
    loader = make_loader(source, comps, StreamConfig(seed=0, shuffle_buffer=8, split="test"), batch_size=4,
                         num_workers=0, flip=False)
    keys = []
    for batch in itertools.islice(loader, 6):  # 24 samples: one epoch of the test split
        assert batch["pixels"].shape == (4, 3, comps.resolution, comps.resolution)
        assert batch["pixels"].abs().sum() > 0 and batch["clip_pixels"].shape[0] == 4
        for key, ids in zip(batch["key"], batch["input_ids"]):
            want = comps.tokenize([captions[key]])[0]
            assert ids.tolist() == want.tolist() and (ids != ids[-1]).sum() > 10, key  # a real caption
        keys += batch["key"]
    assert sorted(keys) == sorted(captions)
