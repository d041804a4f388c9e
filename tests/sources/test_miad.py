"""MIAD: MVTec-like tree, defect folder names as data (the known ones mapped),
`_mask` masks, a mask without suffix, `.JPG` images, a root that is one category folder."""

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.workspace import Workspace

SIZE = (64, 40)


def write_miad(root):
    for i in range(2):
        save(noise_image(SIZE, seed=i), root / f"wind_turbine/train/good/{i:03d}.JPG", "JPEG")
    save(noise_image(SIZE, seed=3), root / "wind_turbine/test/good/000.JPG", "JPEG")
    save(noise_image(SIZE, seed=4), root / "wind_turbine/test/crack/000.JPG", "JPEG")
    save(blob_mask(SIZE, (10, 10, 30, 30)), root / "wind_turbine/ground_truth/crack/000_mask.png")
    save(noise_image(SIZE, seed=5), root / "nut_and_bolt/train/good/000.png")
    save(noise_image(SIZE, seed=6), root / "nut_and_bolt/test/missing/000.png")
    save(blob_mask(SIZE, (30, 5, 60, 35)), root / "nut_and_bolt/ground_truth/missing/000.png")
    save(noise_image(SIZE, seed=7), root / "nut_and_bolt/test/rust/000.png")
    save(blob_mask(SIZE, (0, 0, 20, 20)), root / "nut_and_bolt/ground_truth/rust/000_mask.png")
    return root


def test_ingest_miad_tree(tmp_path, cli, workspace):
    write_miad(tmp_path / "MIAD")
    out = cli("ingest", "miad", "--root", str(tmp_path / "MIAD"), "--workers", "1")
    assert out["records"] == 7 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 4, "train": 3}
    assert out["by_label"] == {"defective": 3, "normal": 4}
    assert out["by_defect_type"] == {"crack": 1, "missing_part": 1, "rust": 1}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("miad", "nut_and_bolt/test/missing/000.png"))
        assert r.domain == "fastener" and r.source_labels == ["missing"] and r.attributes.regions == 1
        w = catalog.get(make_key("miad", "wind_turbine/test/crack/000.JPG"))
        assert w.domain == "wind_turbine" and w.orig_format == "JPEG" and w.boxes[0].label == "crack"
    # a root that is one category folder keeps the same keys
    one = cli("ingest", "miad", "--root", str(tmp_path / "MIAD/nut_and_bolt"), "--workers", "1")
    assert one["seen"] == 3 and one["unchanged"] == 3 and one["records"] == 7
