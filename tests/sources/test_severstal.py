import csv

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sourcekit.masks import RleMask
from imdd_build.sources.severstal import SeverstalAdapter
from imdd_build.workspace import Workspace

W, H = 64, 16  # tiny stand-ins for the 1600x256 images, decoded with --opt rle_shape=16x64


def _rle(mask: np.ndarray) -> str:
    """Hand-rolled reference encoder: 1-based, column-major runs (the Kaggle convention)."""
    flat = np.concatenate([[0], mask.flatten(order="F").astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flat))
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends))


def test_rle_is_one_based_column_major_and_wraps_to_the_next_column():
    # official shape: a run of 10 starting at pixel 250 covers rows 249..255 of column 0, then rows
    # 0..2 of column 1
    expected = np.zeros((256, 1600), bool)
    expected[249:256, 0] = True
    expected[0:3, 1] = True
    expected[10:20, 5] = True  # second run: start 5*256+10+1
    got = RleMask(["250 10", f"{5 * 256 + 11} 10"], (256, 1600)).decode()
    assert got.shape == (256, 1600) and np.array_equal(got, expected)


def _masks():
    a = np.zeros((H, W), bool)
    a[12:16, 0] = True  # run wraps from column 0 into column 1
    a[0:2, 1] = True
    a[4:12, 20:30] = True
    b1 = np.zeros((H, W), bool)
    b1[2:10, 40:50] = True
    b3 = np.zeros((H, W), bool)
    b3[6:14, 45:60] = True  # overlaps class 1
    return a, b1, b3


def write_severstal(root, old_csv=False):
    a, b1, b3 = _masks()
    assert _rle(a).startswith(f"{12 + 1} 6 ")  # one run over the column boundary
    for i, name in enumerate(["0002cc93b.jpg", "000f6bf48.jpg", "0014fce06.jpg", "008ef3d74.jpg"]):
        save(noise_image((W, H), seed=i), root / "train_images" / name)
    save(noise_image((W, H), seed=9), root / "test_images" / "00a0b1c2d.jpg")  # unlabeled: skipped
    (root / "train_images" / "._0002cc93b.jpg").write_bytes(b"\x00\x05\x16\x07")
    rows = {("0002cc93b.jpg", 1): _rle(a), ("000f6bf48.jpg", 1): _rle(b1), ("000f6bf48.jpg", 3): _rle(b3),
            ("008ef3d74.jpg", 4): "5 3 20",  # odd number of values: quarantined at ingest
            ("0badf00d1.jpg", 2): "1 4"}  # listed, no file
    with (root / "train.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        if old_csv:  # four rows per image, empty pixels for absent classes
            w.writerow(["ImageId_ClassId", "EncodedPixels"])
            for image in sorted({k[0] for k in rows} | {"0014fce06.jpg"}):
                for c in range(1, 5):
                    w.writerow([f"{image}_{c}", rows.get((image, c), "")])
        else:
            w.writerow(["ImageId", "ClassId", "EncodedPixels"])
            for (image, c), rle in rows.items():
                w.writerow([image, c, rle])
    (root / "sample_submission.csv").write_text("ImageId,EncodedPixels,ClassId\n")


@pytest.mark.parametrize("old_csv", [False, True])
def test_ingest_both_csv_versions(tmp_path, cli, workspace, old_csv):
    root = tmp_path / "severstal"
    data = root / "severstal-steel-defect-detection" if old_csv else root  # extra level tolerated
    write_severstal(data, old_csv)
    out = cli("ingest", "severstal", "--root", str(root), "--workers", "1", "--resize-mode", "letterbox",
              "--opt", f"rle_shape={H}x{W}")
    assert out["records"] == 3  # test_images and the stray ._ file are not ingested
    assert out["by_label"] == {"defective": 2, "normal": 1}
    assert sum(out["by_split"].values()) == 3 and set(out["by_split"]) <= {"train", "validation", "test"}
    assert out["by_defect_type"] == {"anomaly": 2}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == {"train_images/0badf00d1.jpg", "train_images/008ef3d74.jpg"}
    assert "listed in train.csv but not found" in reasons["train_images/0badf00d1.jpg"]
    assert "odd number of values" in reasons["train_images/008ef3d74.jpg"]

    a, b1, b3 = _masks()
    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        ra = catalog.get(make_key("severstal", "train_images/0002cc93b.jpg"))
        rb = catalog.get(make_key("severstal", "train_images/000f6bf48.jpg"))
        normal = catalog.get(make_key("severstal", "train_images/0014fce06.jpg"))
        assert ra.source_labels == ["1"] and ra.defect_types == ["anomaly"] and ra.split_origin == "seeded"
        assert rb.source_labels == ["1", "3"] and rb.source_attributes["class_ids"] == [1, 3]
        assert rb.source_attributes["class_pixels"] == {"1": int(b1.sum()), "3": int(b3.sum())}
        assert normal.label == "normal" and normal.mask is None and normal.source_labels == []
        assert normal.source_split == "" and normal.split_origin == "seeded"
        for record, expected in ((ra, a), (rb, b1 | b3)):  # classes OR-ed; the wrapped run survives
            canvas = np.asarray(Image.open(ws.store().path(record.mask)))
            back = mask_to_original(canvas, record.geometry, W, H) > 0
            assert (back & expected).sum() / (back | expected).sum() >= 0.95
        back_a = mask_to_original(np.asarray(Image.open(ws.store().path(ra.mask))), ra.geometry, W, H) > 0
        assert back_a[12:16, 0].all() and back_a[0:2, 1].all() and not back_a[2:12, 0].any()
        assert rb.attributes.regions == 1  # the overlapping classes form one region


def test_default_rle_shape_is_official_and_mismatch_is_quarantined(tmp_path, cli):
    write_severstal(tmp_path / "s")
    samples = [s for s in SeverstalAdapter(tmp_path / "s").samples() if hasattr(s, "mask")]
    assert {s.mask.shape for s in samples if s.mask} == {(256, 1600)}
    assert all(s.mask.order == "F" and s.mask.one_based for s in samples if s.mask)
    out = cli("ingest", "severstal", "--root", str(tmp_path / "s"), "--workers", "1", "--resize-mode", "letterbox")
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert "RLE mask is 1600x256, image is 64x16" in reasons["train_images/0002cc93b.jpg"]
    assert out["by_label"] == {"normal": 1}


def test_wrong_root_is_a_run_level_error(tmp_path):
    (tmp_path / "x" / "train_images").mkdir(parents=True)
    with pytest.raises(RootError, match="no train.csv"):
        list(SeverstalAdapter(tmp_path / "x").samples())
    (tmp_path / "x" / "train.csv").write_text("a,b\n")
    with pytest.raises(RootError, match="unknown header"):
        list(SeverstalAdapter(tmp_path / "x").samples())
