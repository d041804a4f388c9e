"""Crack500's re-packaged layout `Crack500/{train,val,test}/{images,masks}/<stem>.{jpg,png}`: masks in
their own folder under the image's stem (no `_mask` suffix), the split from the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.record import Quarantined, make_key
from imdd_build.sources.crack500 import Crack500Adapter
from imdd_build.workspace import Workspace

CROPS = {  # split folder -> crop stems (the real crop names: <photo date_time>_<row>_<col>)
    "train": ["20160222_081011_1_361", "20160222_081011_1_721", "20160222_114759_361_1"],
    "val": ["20160307_141237_1_1"],
    "test": ["20160328_153626_1_1", "20160329_100400_361_721"],
}


def write_split_folders(root: Path) -> dict[str, int]:
    """Writes the layout; returns the crack pixel count of every image's mask by image path."""
    area = {}
    for s, (split, stems) in enumerate(CROPS.items()):
        for i, stem in enumerate(stems):
            save(noise_image((64, 36), seed=10 * s + i), root / split / "images" / f"{stem}.jpg")
            m = np.zeros((36, 64), np.uint8)
            m[4:30, 10 + i:12 + 2 * i] = 255
            save(Image.fromarray(m, "L"), root / split / "masks" / f"{stem}.png")
            area[f"{split}/images/{stem}.jpg"] = int((m > 0).sum())
    save(noise_image((64, 36), seed=99), root / "test/images/20160401_000000_1_1.jpg")  # its mask is missing
    return area


def test_split_folders_with_mask_folder(tmp_path, cli, workspace):
    area = write_split_folders(tmp_path / "Crack500")
    out = cli("ingest", "crack500", "--root", str(tmp_path / "Crack500"), "--workers", "1")
    assert out["records"] == 6 and out["by_split"] == {"train": 3, "validation": 1, "test": 2}
    # the masks are never taken for images; only the image without a mask is quarantined
    assert out["quarantine"] == [{"path": "test/images/20160401_000000_1_1.jpg",
                                  "reason": "mask masks/20160401_000000_1_1.png not found"}]
    with Workspace(workspace).catalog() as catalog:
        for rel, pixels in area.items():
            r = catalog.get(make_key("crack500", rel))
            split = rel.split("/")[0]
            assert r.source_split == split and r.split_origin == "official"
            assert r.mask_source_path == rel.replace("/images/", "/masks/").replace(".jpg", ".png")
            assert r.attributes.area_fraction == pytest.approx(pixels / (64 * 36), abs=1e-5), rel


def test_both_layouts_side_by_side_from_a_parent_root(tmp_path):
    """The original crop release and the re-packaged copy under one root: each file by its own rule."""
    write_split_folders(tmp_path / "Crack500")
    save(noise_image((64, 36), seed=5), tmp_path / "CRACK500_orig/traincrop/20160222_081011_1_1.jpg")
    save(Image.fromarray(np.full((36, 64), 255, np.uint8), "L"),
         tmp_path / "CRACK500_orig/traincrop/20160222_081011_1_1_mask.png")
    items = list(Crack500Adapter(tmp_path).samples())
    samples = {s.rel_path: s for s in items if not isinstance(s, Quarantined)}
    assert len(samples) == 7 and not any("/masks/" in p or p.endswith("_mask.png") for p in samples)
    orig = samples["CRACK500_orig/traincrop/20160222_081011_1_1.jpg"]
    assert orig.mask.describe() == "CRACK500_orig/traincrop/20160222_081011_1_1_mask.png"
    assert orig.split_origin == "seeded"  # no list, no split folder above images/
    assert samples["Crack500/val/images/20160307_141237_1_1.jpg"].our_split() == "validation"
