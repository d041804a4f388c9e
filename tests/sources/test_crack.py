from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError, seeded_split
from imdd_build.sources.crack500 import Crack500Adapter
from imdd_build.sources.crackforest import CrackForestAdapter, decode_cfd_mat
from imdd_build.workspace import Workspace

SIZE = (64, 32)  # CFD is 480x320; scaled down to a size the canvas scales by exactly 8


def crack_map(size, row: int, background=1, crack=2) -> np.ndarray:
    seg = np.full((size[1], size[0]), background, np.uint16)
    seg[row:row + 2, 4:44] = crack  # a horizontal crack, 2 px thick, 40 px long
    return seg


def write_cfd(data: Path) -> None:
    save(noise_image(SIZE, seed=1), data / "image/001.jpg")
    (data / "groundTruth").mkdir(parents=True)
    # as MATLAB writes BSDS-style ground truth: a 1x1 cell holding a struct
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Segmentation": crack_map(SIZE, 10), "Boundaries": np.zeros((32, 64), np.uint8)}
    savemat(data / "groundTruth/001.mat", {"groundTruth": cell})
    save(noise_image(SIZE, seed=2), data / "image/002.jpg")
    # a plain struct variant (no cell), 0-based labels
    savemat(data / "groundTruth/002.mat", {"groundTruth": {"Segmentation": crack_map(SIZE, 20, 0, 1)}})
    save(noise_image(SIZE, seed=3), data / "image/003.jpg")
    savemat(data / "groundTruth/003.mat", {"other": np.zeros(3)})  # no groundTruth variable
    save(noise_image(SIZE, seed=4), data / "image/004.jpg")  # no mask at all
    # the PNG variant for one image, and the repository's .seg text files (ignored)
    save(noise_image(SIZE, seed=5), data / "image/005.jpg")
    png = np.zeros((32, 64), np.uint8)
    png[2:30, 20:22] = 1
    save(Image.fromarray(png, "L"), data / "seg/005.png")
    (data / "seg/001.seg").write_text("format ascii cr\n")
    (data / "image/.DS_Store").write_bytes(b"\x00")


def test_cfd_mat_and_png_masks(tmp_path, cli, workspace):
    write_cfd(tmp_path / "CrackForest-dataset-master")
    (tmp_path / "CrackForest-dataset-master/groundTruth/.hidden.mat").write_bytes(b"")
    out = cli("ingest", "crackforest", "--root", str(tmp_path), "--workers", "1")
    assert out["records"] == 3 and out["by_label"] == {"defective": 3}
    assert out["by_defect_type"] == {"road_crack": 3}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == {"image/003.jpg", "image/004.jpg"}
    assert reasons["image/003.jpg"].startswith("mask groundTruth/003.mat: no 'groundTruth' variable")
    assert reasons["image/004.jpg"] == "no mask for 004 (groundTruth/004.mat or a PNG mask)"
    with Workspace(workspace).catalog() as catalog:
        for stem, area, wide in (("001", 80, True), ("002", 80, True), ("005", 56, False)):
            r = catalog.get(make_key("crackforest", f"image/{stem}.jpg"))
            assert r.source_labels == ["crack"] and r.domain == "road_pavement" and r.split_origin == "seeded"
            assert r.split == seeded_split("crackforest", stem) and r.source_split == ""
            assert r.attributes.area_fraction == pytest.approx(area / (64 * 32), abs=1e-5), stem
            assert r.attributes.regions == 1 and len(r.boxes) == 1
            box = r.boxes[0]
            assert ((box.x1 - box.x0) > (box.y1 - box.y0)) == wide
        assert catalog.get(make_key("crackforest", "image/001.jpg")).mask_source_path == "groundTruth/001.mat"
        assert catalog.get(make_key("crackforest", "image/005.jpg")).mask_source_path == "seg/005.png"


def test_cfd_mat_decoding_and_wrong_root(tmp_path):
    write_cfd(tmp_path / "cfd")
    mask = decode_cfd_mat(tmp_path / "cfd/groundTruth/001.mat")
    assert mask.shape == (32, 64) and mask.sum() == 80 and mask[10:12, 4:44].all()
    with pytest.raises(RootError, match="no image/ folder"):
        list(CrackForestAdapter(tmp_path / "cfd/groundTruth").samples())


def write_crack500(root: Path, lists: bool = True) -> None:
    crops = {
        "traincrop": ["20160222_081011_1_361", "20160222_081011_1_721", "20160222_114759_361_1"],
        "valcrop": ["20160307_141237_1_1"],
        "testcrop": ["20160328_153626_1_1", "20160329_100400_361_721"],
    }
    for seed, (folder, stems) in enumerate(crops.items()):
        for i, stem in enumerate(stems):
            save(noise_image((64, 36), seed=10 * seed + i), root / folder / f"{stem}.jpg")
            m = np.zeros((36, 64), np.uint8)
            m[5:30, 10 + i:13 + i] = 1 if folder != "valcrop" else 255  # 0/1 and 0/255 masks
            save(Image.fromarray(m, "L"), root / folder / f"{stem}_mask.png")
    save(noise_image((64, 36), seed=99), root / "testcrop/20160401_000000_1_1.jpg")  # no mask
    if lists:
        (root / "train.txt").write_text(
            "traincrop/20160222_081011_1_361.jpg traincrop/20160222_081011_1_361_mask.png\n"
            "traincrop/20160222_081011_1_721.jpg\n")  # image only; 20160222_114759 is in no list
        (root / "val.txt").write_text("./valcrop/20160307_141237_1_1.jpg\n")
        (root / "test.txt").write_text(
            "CRACK500/testcrop/20160328_153626_1_1.jpg CRACK500/testcrop/20160328_153626_1_1_mask.png\n"
            "testcrop/20160329_100400_361_721.jpg testcrop/20160329_100400_361_721_mask.png\n"
            "testcrop/20169999_000000_1_1.jpg testcrop/20169999_000000_1_1_mask.png\n\n")


def test_crack500_lists_masks_and_quarantine(tmp_path, cli, workspace):
    write_crack500(tmp_path / "CRACK500")
    out = cli("ingest", "crack500", "--root", str(tmp_path / "CRACK500"), "--workers", "1")
    seeded = seeded_split("crack500", "20160222_114759")
    by_split = {"train": 2, "validation": 1, "test": 2}
    by_split[seeded] += 1
    assert out["records"] == 6 and out["by_split"] == by_split and out["by_label"] == {"defective": 6}
    assert out["by_defect_type"] == {"road_crack": 6}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert reasons == {"testcrop/20169999_000000_1_1.jpg": "listed in test.txt line 3 but not found",
                       "testcrop/20160401_000000_1_1.jpg": "mask 20160401_000000_1_1_mask.png not found"}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("crack500", "testcrop/20160328_153626_1_1.jpg"))
        assert r.split == "test" and r.source_split == "test" and r.split_origin == "official"
        assert r.mask_source_path == "testcrop/20160328_153626_1_1_mask.png" and r.domain == "road_pavement"
        assert r.attributes.area_fraction == pytest.approx(25 * 3 / (64 * 36), abs=1e-5)
        v = catalog.get(make_key("crack500", "valcrop/20160307_141237_1_1.jpg"))
        assert v.split == "validation" and v.source_split == "val"
        assert v.attributes.area_fraction == pytest.approx(25 * 3 / (64 * 36), abs=1e-5)
        u = catalog.get(make_key("crack500", "traincrop/20160222_114759_361_1.jpg"))
        assert u.split == seeded and u.split_origin == "seeded" and u.source_split == ""


def test_crack500_without_lists_seeded_by_photo(tmp_path):
    write_crack500(tmp_path / "c", lists=False)
    samples = [s for s in Crack500Adapter(tmp_path / "c").samples() if hasattr(s, "rel_path")]
    assert len(samples) == 6 and all(s.split_origin == "seeded" for s in samples)
    assert not any(s.rel_path.endswith("_mask.png") for s in samples)
    same_photo = [s.split for s in samples if s.rel_path.startswith("traincrop/20160222_081011")]
    assert len(same_photo) == 2 and len(set(same_photo)) == 1
    (tmp_path / "none").mkdir()
    with pytest.raises(RootError, match="no crack images"):
        list(Crack500Adapter(tmp_path / "none").samples())
