"""The shard reader gives `class_mask` from Parquet and WebDataset shards alike (shards built by `imdd-build`).

The demo is masked and single-type: every defective record's class_mask is its mask > 0 as class 1, and a
normal record has none (Parquet: null; WebDataset: an all-zero stand-in member that `has_class_mask` marks).
"""

from __future__ import annotations

import numpy as np

from imdd_models.data import ReadStats, iter_records, resolve
from imdd_models.segmentation.targets import build_target


def _records(demo_shards, fmt: str) -> dict[str, dict]:
    stats = ReadStats()
    records = {r["key"]: r for r in iter_records(resolve(demo_shards, fmt=fmt), stats=stats)}
    assert stats.read == 42 and stats.bad == 0
    return records


def test_parquet_and_webdataset_give_the_same_class_mask(demo_shards):
    parquet, wds = _records(demo_shards, "parquet"), _records(demo_shards, "webdataset")
    assert parquet.keys() == wds.keys()
    defective = [k for k, r in parquet.items() if r["label"] == "defective"]
    assert len(defective) == 18
    for key, a in parquet.items():
        b = wds[key]
        assert a["has_class_mask"] == b["has_class_mask"] == (key in defective), key
        assert a["has_mask"] == b["has_mask"] == (key in defective), key
        if key not in defective:
            assert a["class_mask"] is None and b["class_mask"] is None, key
            assert a["mask"] is None and b["mask"] is None, key  # the WebDataset stand-in is no mask
            continue
        assert a["class_mask"].mode == b["class_mask"].mode == "L" and a["class_mask"].size == (512, 512)
        cm = np.asarray(a["class_mask"])
        assert np.array_equal(cm, np.asarray(b["class_mask"])), key
        assert len(a["defect_types"]) == 1 and set(np.unique(cm).tolist()) == {0, 1}, key
        assert np.array_equal(cm == 1, np.asarray(a["mask"]) > 0), key


def test_segmentation_targets_agree_across_formats(demo_shards):
    parquet, wds = _records(demo_shards, "parquet"), _records(demo_shards, "webdataset")
    classes = sorted({t for r in parquet.values() for t in r["defect_types"]})
    index = {c: i for i, c in enumerate(classes)}
    for key, a in parquet.items():
        ta, tb = build_target(a, index, 64, 8), build_target(wds[key], index, 64, 8)
        assert ta.has_pixels and tb.has_pixels and ta.classes == tb.classes, key  # normal: all background
        assert np.array_equal(ta.masks, tb.masks), key
        assert bool(ta.classes) == (a["label"] == "defective"), key
