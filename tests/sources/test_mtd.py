from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError, seeded_split
from imdd_build.sources.mtd import MTDAdapter
from imdd_build.workspace import Workspace
from realdata import realdata, require

REALDATA = realdata("magnetic_tile")
SIZE = (64, 32)  # scales by exactly 8 onto the canvas: nearest resizing keeps area fractions exact


def soft_mask(size, box, core=255, edge=(90, 200)) -> Image.Image:
    """A mask as MTD ships them: a 255 core with interpolated gray values around it."""
    w, h = size
    a = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    a[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = edge[0]  # below the threshold: not defect
    a[y0:y1, x0:x1] = edge[1]  # above the threshold: defect
    a[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = core
    return Image.fromarray(a, "L")


def write_mtd(root: Path) -> dict:
    save(noise_image(SIZE, "L", seed=1), root / "MT_Blowhole/Imgs/exp1_num_1.jpg")
    save(soft_mask(SIZE, (10, 8, 20, 16)), root / "MT_Blowhole/Imgs/exp1_num_1.png")
    save(noise_image(SIZE, "L", seed=2), root / "MT_Crack/Imgs/exp2_num_7.JPG", "JPEG")  # upper-case pair
    save(soft_mask(SIZE, (30, 4, 34, 28)), root / "MT_Crack/Imgs/exp2_num_7.PNG", "PNG")
    save(noise_image(SIZE, "L", seed=3), root / "MT_Crack/Imgs/exp2_num_8.jpg")  # mask missing
    save(soft_mask(SIZE, (1, 1, 5, 5)), root / "MT_Crack/Imgs/exp2_num_99.png")  # mask without image
    for i in range(3):
        save(noise_image(SIZE, "L", seed=10 + i), root / f"MT_Free/Imgs/exp0_num_{i}.jpg")
        save(Image.new("L", SIZE, 0), root / f"MT_Free/Imgs/exp0_num_{i}.png")  # all-zero masks
    (root / "MT_Free/Imgs/._exp0_num_0.jpg").write_bytes(b"\x00\x05\x16\x07")
    (root / "README.md").write_text("magnetic tile\n")
    save(noise_image((40, 40), seed=5), root / "dataset.jpg")  # the overview figure at the root
    return {"records": 5, "by_label": {"defective": 2, "normal": 3},
            "quarantined": {"MT_Crack/Imgs/exp2_num_8.jpg"}}


def test_pngs_are_masks_thresholded_free_is_normal_seeded_split(tmp_path, cli, workspace):
    expected = write_mtd(tmp_path / "mtd")
    out = cli("ingest", "mtd", "--root", str(tmp_path / "mtd"), "--workers", "1")
    assert out["records"] == expected["records"] and out["by_label"] == expected["by_label"]
    assert sum(out["by_split"].values()) == 5
    assert out["by_defect_type"] == {"blowhole": 1, "crack": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == expected["quarantined"]  # no png ever taken as an image (no key collision)
    assert reasons["MT_Crack/Imgs/exp2_num_8.jpg"] == "mask exp2_num_8.png not found next to the image"
    with Workspace(workspace).catalog() as catalog:
        blow = catalog.get(make_key("mtd", "MT_Blowhole/Imgs/exp1_num_1.jpg"))
        assert blow.defect_types == ["blowhole"] and blow.source_labels == ["MT_Blowhole"]
        assert blow.domain == "magnetic_tile" and blow.orig_mode == "L"
        assert blow.split_origin == "seeded" and blow.source_split == ""
        assert blow.split == seeded_split("mtd", "exp1_num_1")
        # gray edge values 90 are background, 200 and 255 are defect: a 10x8 block of 64x32
        assert blow.mask_source_path == "MT_Blowhole/Imgs/exp1_num_1.png"
        assert blow.attributes.area_fraction == pytest.approx(10 * 8 / (64 * 32), abs=1e-5)
        assert blow.attributes.regions == 1 and blow.boxes[0].label == "blowhole"
        g = blow.geometry
        assert blow.boxes[0].x0 == pytest.approx(g.to_canvas(10, 8)[0])
        assert blow.boxes[0].y1 == pytest.approx(g.to_canvas(20, 16)[1])
        crack = catalog.get(make_key("mtd", "MT_Crack/Imgs/exp2_num_7.JPG"))
        assert crack.defect_types == ["crack"] and crack.attributes.area_fraction == pytest.approx(4 * 24 / 2048, abs=1e-5)
        free = catalog.get(make_key("mtd", "MT_Free/Imgs/exp0_num_0.jpg"))
        assert free.label == "normal" and free.defect_types == [] and free.source_labels == ["MT_Free"]
        assert free.mask is None and free.boxes == []


def test_nested_root_and_class_root_give_same_paths(tmp_path, cli):
    write_mtd(tmp_path / "repo/Magnetic-Tile-Defect")
    out = cli("ingest", "mtd", "--root", str(tmp_path / "repo"), "--workers", "1")
    assert out["records"] == 5 and out["quarantined"] == 1
    out = cli("ingest", "mtd", "--root", str(tmp_path / "repo/Magnetic-Tile-Defect/MT_Free"), "--workers", "1")
    assert out["seen"] == 3 and out["unchanged"] == 3 and out["quarantined"] == 0
    direct = [s.rel_path for s in MTDAdapter(tmp_path / "repo/Magnetic-Tile-Defect").samples()
              if hasattr(s, "rel_path")]
    nested = [s.rel_path for s in MTDAdapter(tmp_path / "repo").samples() if hasattr(s, "rel_path")]
    one = [s.rel_path for s in MTDAdapter(tmp_path / "repo/Magnetic-Tile-Defect/MT_Free").samples()]
    assert direct == nested and len(direct) == 5
    assert one == [p for p in direct if p.startswith("MT_Free/")] and len(one) == 3
    filtered = list(MTDAdapter(tmp_path / "repo", categories=["MT_Blowhole"]).samples())
    assert [s.rel_path for s in filtered] == ["MT_Blowhole/Imgs/exp1_num_1.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(RootError, match="no MT_"):
        list(MTDAdapter(tmp_path / "empty").samples())


@require("magnetic_tile")
def test_real_samples_masks_match_source_fractions(cli, workspace):
    jpgs = sorted(REALDATA.glob("MT_*/Imgs/*.jpg"))
    out = cli("ingest", "mtd", "--root", str(REALDATA), "--workers", "1")
    # every .jpg is a record (every one has its mask); the .png files and README are not images
    assert out["records"] == len(jpgs) and out["quarantined"] == 0
    free = [p for p in jpgs if p.parent.parent.name == "MT_Free"]
    assert out["by_label"] == {"defective": len(jpgs) - len(free), "normal": len(free)}
    with Workspace(workspace).catalog() as catalog:
        for jpg in jpgs:
            record = catalog.get(make_key("mtd", jpg.relative_to(REALDATA).as_posix()))
            assert record is not None and record.orig_mode == "L"
            source = np.asarray(Image.open(jpg.with_suffix(".png"))) > 127
            if record.label == "normal":
                assert not source.any() and record.mask is None
                continue
            assert (record.orig_width, record.orig_height) == (source.shape[1], source.shape[0])
            stored = np.asarray(Image.open(Workspace(workspace).store().path(record.mask))) > 0
            x0, y0, x1, y1 = record.geometry.content_box
            fraction = stored[y0:y1, x0:x1].mean()
            assert fraction == pytest.approx(source.mean(), rel=0.1, abs=5e-4), jpg.name
            assert record.attributes.area_fraction == pytest.approx(fraction, abs=1e-5)
