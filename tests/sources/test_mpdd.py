"""MPDD: MVTec-like tree with its own defect folder names, `_mask` masks, a mask without suffix,
a missing mask, upper-case extensions and a wrapping folder."""

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.workspace import Workspace

SIZE = (48, 48)


def write_mpdd(top):
    root = top / "MPDD"
    save(noise_image(SIZE, seed=1), root / "bracket_brown/train/good/000.png")
    save(noise_image(SIZE, seed=2), root / "bracket_brown/test/good/000.png")
    save(noise_image(SIZE, seed=3), root / "bracket_brown/test/bend_and_parts_mismatch/000.png")
    save(blob_mask(SIZE, (5, 5, 25, 25)), root / "bracket_brown/ground_truth/bend_and_parts_mismatch/000_mask.png")
    save(noise_image(SIZE, seed=4), root / "bracket_brown/test/parts_mismatch/000.PNG")
    save(blob_mask(SIZE, (20, 20, 40, 40)), root / "bracket_brown/ground_truth/parts_mismatch/000.png")  # no suffix
    save(noise_image(SIZE, seed=5), root / "metal_plate/train/good/000.png")
    save(noise_image(SIZE, seed=6), root / "metal_plate/test/major_rust/000.png")
    save(blob_mask(SIZE, (5, 30, 40, 45)), root / "metal_plate/ground_truth/major_rust/000_mask.png")
    save(noise_image(SIZE, seed=7), root / "metal_plate/test/scratches/000.png")  # mask missing
    save(noise_image(SIZE, seed=8), root / "tubes/test/anomalous/000.png")
    save(blob_mask(SIZE, (5, 5, 10, 40)), root / "tubes/ground_truth/anomalous/000_mask.png")
    (root / "readme.txt").write_text("MPDD\n")
    (root / "metal_plate/test/.DS_Store").write_bytes(b"\x00")
    return root


def test_ingest_maps_mpdd_defect_names(tmp_path, cli, workspace):
    write_mpdd(tmp_path / "dl")
    out = cli("ingest", "mpdd", "--root", str(tmp_path / "dl"), "--workers", "1")
    assert out["records"] == 8 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 6, "train": 2}
    assert out["by_label"] == {"defective": 5, "normal": 3}
    assert out["by_defect_type"] == {"anomaly": 1, "multiple_defects": 1, "rust": 1, "scratch": 1, "wrong_part": 1}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("mpdd", "bracket_brown/test/parts_mismatch/000.PNG"))
        assert r.mask_source_path == "bracket_brown/ground_truth/parts_mismatch/000.png"
        assert r.source_labels == ["parts_mismatch"] and r.defect_types == ["wrong_part"]
        assert r.domain == "painted_metal_part" and r.split_origin == "official" and len(r.boxes) == 1
        x0, y0 = r.geometry.to_canvas(20, 20)
        assert abs(r.boxes[0].x0 - x0) <= 2 * r.geometry.scale_x and abs(r.boxes[0].y0 - y0) <= 2 * r.geometry.scale_y
        s = catalog.get(make_key("mpdd", "metal_plate/test/scratches/000.png"))
        assert s.mask is None and s.source_attributes == {"mask": "missing"} and s.defect_types == ["scratch"]
        assert catalog.get(make_key("mpdd", "bracket_brown/test/good/000.png")).label == "normal"


def test_category_filter_and_unknown_category(tmp_path, cli):
    write_mpdd(tmp_path / "dl")
    out = cli("ingest", "mpdd", "--root", str(tmp_path / "dl"), "--category", "tubes", "--workers", "1")
    assert out["records"] == 1 and out["by_defect_type"] == {"anomaly": 1}
    bad = cli("ingest", "mpdd", "--root", str(tmp_path / "dl"), "--category", "nope", "--workers", "1", expect=2)
    assert "categories not found: nope" in bad["error"]
