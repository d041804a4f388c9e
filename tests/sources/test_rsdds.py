from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError, seeded_split
from imdd_build.sources.rsdds import RSDDsAdapter
from imdd_build.workspace import Workspace

T1 = "Type-I RSDDs dataset"
T2 = "Type-II RSDDs dataset"


def jpeg_mask(size, box) -> Image.Image:
    w, h = size
    a = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    return Image.fromarray(a, "L")


def write_rsdds(root: Path) -> None:
    for i in (1, 2):
        save(noise_image((32, 96), "L", seed=i), root / T1 / "Rail surface images" / f"rail_{i}.jpg")
        save(jpeg_mask((32, 96), (8, 20 * i, 24, 20 * i + 16)), root / T1 / "GroundTruth" / f"rail_{i}.jpg")
    save(noise_image((16, 96), "L", seed=5), root / T1 / "Rail surface images" / "rail_3.jpg")  # no mask
    # Type-II: names differ in case between image and mask
    save(noise_image((16, 96), "L", seed=6), root / T2 / "Rail surface images" / "Rail_1.JPG", "JPEG")
    save(jpeg_mask((16, 96), (4, 40, 12, 56)), root / T2 / "GroundTruth" / "rail_1.jpg")
    (root / T2 / "Rail surface images" / "Thumbs.db").write_bytes(b"\x00")
    (root / "readme.txt").write_text("RSDDs\n")


def test_sets_as_products_jpeg_masks_thresholded(tmp_path, cli, workspace):
    write_rsdds(tmp_path / "RSDDs")
    out = cli("ingest", "rsdds", "--root", str(tmp_path / "RSDDs"), "--workers", "1", "--resize-mode", "letterbox")
    assert out["records"] == 3 and out["by_label"] == {"defective": 3}
    assert out["by_defect_type"] == {"anomaly": 3} and sum(out["by_split"].values()) == 3
    assert out["quarantine"] == [{"path": f"{T1}/Rail surface images/rail_3.jpg",
                                  "reason": "mask rail_3.* not found in GroundTruth/"}]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("rsdds", f"{T1}/Rail surface images/rail_2.jpg"))
        assert r.product == "Type-I" and r.domain == "rail" and r.source_labels == ["defect"]
        assert r.split_origin == "seeded" and r.split == seeded_split("rsdds", "Type-I/rail_2")
        assert r.mask_source_path == f"{T1}/GroundTruth/rail_2.jpg"
        # JPEG ringing around the block stays below the threshold: one region, about 16x16 of 32x96
        assert r.attributes.regions == 1
        assert r.attributes.area_fraction == pytest.approx(16 * 16 / (32 * 96), rel=0.1)
        t2 = catalog.get(make_key("rsdds", f"{T2}/Rail surface images/Rail_1.JPG"))
        assert t2.product == "Type-II" and t2.attributes.regions == 1
        assert t2.attributes.area_fraction == pytest.approx(8 * 16 / (16 * 96), rel=0.1)


def test_one_set_root_category_filter_and_wrong_root(tmp_path, cli):
    write_rsdds(tmp_path / "RSDDs")
    out = cli("ingest", "rsdds", "--root", str(tmp_path / "RSDDs" / T2), "--workers", "1", "--resize-mode", "letterbox")
    assert out["records"] == 1 and out["quarantined"] == 0
    assert out["by_split"] == {seeded_split("rsdds", "Type-II/rail_1"): 1}
    whole = [s.rel_path for s in RSDDsAdapter(tmp_path / "RSDDs").samples() if hasattr(s, "rel_path")]
    one = [s.rel_path for s in RSDDsAdapter(tmp_path / "RSDDs" / T2).samples()]
    assert one == [p for p in whole if p.startswith(T2)] and len(one) == 1
    filtered = [s for s in RSDDsAdapter(tmp_path / "RSDDs", categories=["Type-II"]).samples()]
    assert [s.product for s in filtered] == ["Type-II"]
    nested = [s.rel_path for s in RSDDsAdapter(tmp_path).samples() if hasattr(s, "rel_path")]
    assert nested == whole
    (tmp_path / "empty").mkdir()
    with pytest.raises(RootError, match="Type-I RSDDs dataset"):
        list(RSDDsAdapter(tmp_path / "empty").samples())
