"""MVTec 3D-AD: rgb/ images with gt/ masks of the same name, xyz/ TIFFs ignored, all-zero gt masks
for good test images, a validation split, a calibration folder, a wrapping archive folder."""

import numpy as np
from PIL import Image

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.mvtec3d import MVTec3DAdapter
from imdd_build.workspace import Workspace

SIZE = (40, 40)


def xyz(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((40, 40), np.float32), "F").save(path)  # a float TIFF stand-in


def write_mvtec3d(top):
    root = top / "mvtec_3d_anomaly_detection"
    for split, n in (("train", 2), ("validation", 1)):
        for i in range(n):
            save(noise_image(SIZE, seed=10 * len(split) + i), root / f"bagel/{split}/good/rgb/{i:03d}.png")
            xyz(root / f"bagel/{split}/good/xyz/{i:03d}.tiff")
    save(noise_image(SIZE, seed=1), root / "bagel/test/good/rgb/000.png")
    save(Image.fromarray(np.zeros((40, 40), np.uint8), "L"), root / "bagel/test/good/gt/000.png")  # all zero
    xyz(root / "bagel/test/good/xyz/000.tiff")
    save(noise_image(SIZE, seed=2), root / "bagel/test/crack/rgb/000.png")
    save(blob_mask(SIZE, (5, 5, 20, 30)), root / "bagel/test/crack/gt/000.png")
    xyz(root / "bagel/test/crack/xyz/000.tiff")
    save(noise_image(SIZE, seed=3), root / "bagel/test/combined/rgb/000.png")
    save(blob_mask(SIZE, (20, 20, 35, 35)), root / "bagel/test/combined/gt/000.png")
    save(noise_image(SIZE, seed=4), root / "bagel/test/combined/rgb/001.png")  # no gt file
    save(noise_image(SIZE, seed=5), root / "cable_gland/train/good/rgb/000.png")
    save(noise_image(SIZE, seed=6), root / "cable_gland/test/thread/rgb/000.png")
    save(blob_mask(SIZE, (2, 2, 12, 38)), root / "cable_gland/test/thread/gt/000.png")
    (root / "bagel/calibration").mkdir(parents=True)
    (root / "bagel/calibration/camera_parameters.json").write_text("{}")
    (root / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    return root


def test_adapter_reads_rgb_only_and_pairs_gt(tmp_path):
    root = write_mvtec3d(tmp_path)
    adapter = MVTec3DAdapter(tmp_path)
    assert adapter.base == root
    samples = {s.rel_path: s for s in adapter.samples()}
    assert all("/rgb/" in p for p in samples) and len(samples) == 9
    assert samples["bagel/test/crack/rgb/000.png"].mask.paths == ["bagel/test/crack/gt/000.png"]
    assert samples["bagel/test/good/rgb/000.png"].mask is None  # all-zero gt of a good image not attached
    assert samples["bagel/validation/good/rgb/000.png"].our_split() == "validation"


def test_ingest_mvtec3d(tmp_path, cli, workspace):
    write_mvtec3d(tmp_path)
    out = cli("ingest", "mvtec3d", "--root", str(tmp_path), "--workers", "1")
    assert out["records"] == 9 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 5, "train": 3, "validation": 1}
    assert out["by_label"] == {"defective": 4, "normal": 5}
    assert out["by_defect_type"] == {"crack": 1, "deformation": 1, "multiple_defects": 2}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("mvtec3d", "bagel/test/crack/rgb/000.png"))
        assert r.domain == "bakery" and r.defect_types == ["crack"] and r.attributes.basis == "mask"
        x1, y1 = r.geometry.to_canvas(20, 30)
        assert abs(r.boxes[0].x1 - x1) <= 2 * r.geometry.scale_x and abs(r.boxes[0].y1 - y1) <= 2 * r.geometry.scale_y
        t = catalog.get(make_key("mvtec3d", "cable_gland/test/thread/rgb/000.png"))
        assert t.defect_labels[0].part == "thread" and t.source_labels == ["thread"]
        g = catalog.get(make_key("mvtec3d", "bagel/test/good/rgb/000.png"))
        assert g.label == "normal" and g.mask is None and g.defect_types == []
        c = catalog.get(make_key("mvtec3d", "bagel/test/combined/rgb/001.png"))
        assert c.mask is None and c.source_attributes == {"mask": "missing"}
