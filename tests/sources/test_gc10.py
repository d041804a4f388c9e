"""GC10-DET: class folders 1..10 + the misspelled `lable/` VOC folder, and the Kaggle copy."""

from pathlib import Path

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.gc10 import class_number
from imdd_build.workspace import Workspace

SIZE = (96, 48)  # wide like the 2048x1000 originals


def voc(path: Path, objects: list[tuple[str, int, int, int, int]], filename: str = "x.jpg") -> Path:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                   f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{SIZE[0]}</width>"
                    f"<height>{SIZE[1]}</height><depth>1</depth></size>{objs}</annotation>")
    return path


def test_class_number():
    assert class_number("1") == 1 and class_number("10_yaozhed") == 10 and class_number("3_yueyawan") == 3
    assert class_number("Crescent Gap") == 3 and class_number("waist-folding") == 10
    assert class_number("d") is None and class_number("11") is None and class_number("lable") is None


def test_gc10_original_layout(tmp_path, cli, workspace):
    root = tmp_path / "GC10-DET"
    a, b = "img_01_425382900_00001", "img_01_425382900_00002"
    save(noise_image(SIZE, "L", seed=1), root / "1" / f"{a}.jpg")
    voc(root / "lable" / f"{a}.xml", [("1_chongkong", 10, 5, 30, 25)])
    save(noise_image(SIZE, "L", seed=2), root / "1" / f"{b}.jpg")
    voc(root / "lable" / f"{b}.xml", [("3_yueyawan", 0, 0, 20, 47)])  # XML disagrees with folder 1
    save(noise_image(SIZE, "L", seed=3), root / "4" / "img_02_111_00001.jpg")  # no XML: folder label
    save(noise_image(SIZE, "L", seed=4), root / "10" / "img_03_222_00001.JPG")
    voc(root / "lable" / "img_03_222_00001.xml", [("10_yaozhed", 50, 10, 90, 40), ("d", 1, 1, 5, 5)])
    save(noise_image(SIZE, "L", seed=5), root / "6" / "img_04_333_00001.jpg")
    (root / "lable" / "img_04_333_00001.xml").write_text("<annotation><object><name>6_siban</name>")
    voc(root / "lable" / "img_09_999_00001.xml", [("7_yiwu", 1, 1, 9, 9)])  # no image anywhere
    (root / "lable" / ".DS_Store").write_bytes(b"\x00")
    (root / "1" / "._x.jpg").write_bytes(b"\x00\x05\x16\x07")
    out = cli("ingest", "gc10", "--root", str(root), "--workers", "1")
    assert out["records"] == 4 and out["by_label"] == {"defective": 4}
    assert sum(out["by_split"].values()) == 4
    assert out["by_defect_type"] == {"crescent_gap": 1, "punching_hole": 1, "waist_folding": 1, "water_spot": 1}
    quarantine = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(quarantine) == {"lable/img_04_333_00001.xml", "lable/img_09_999_00001.xml"}
    assert "not readable VOC XML" in quarantine["lable/img_04_333_00001.xml"]
    assert "no image" in quarantine["lable/img_09_999_00001.xml"]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("gc10", f"1/{a}.jpg"))
        assert r.source_labels == ["1_chongkong"] and r.defect_types == ["punching_hole"]
        assert r.split_origin == "seeded" and r.domain == "steel_sheet"
        x0, y0 = r.geometry.to_canvas(10, 5)
        x1, y1 = r.geometry.to_canvas(31, 26)
        box = r.boxes[0]
        assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((x0, y0, x1, y1), abs=0.01)
        r = catalog.get(make_key("gc10", f"1/{b}.jpg"))
        assert r.source_labels == ["3_yueyawan"] and r.defect_types == ["crescent_gap"]
        assert r.source_attributes == {"folder_class": "1_chongkong", "annotation": "xml", "label_conflict": True}
        r = catalog.get(make_key("gc10", "4/img_02_111_00001.jpg"))
        assert r.source_labels == ["4_shuiban"] and r.boxes == []
        assert r.source_attributes["annotation"] == "folder"
        r = catalog.get(make_key("gc10", "10/img_03_222_00001.JPG"))
        assert r.source_labels == ["10_yaozhe"] and len(r.boxes) == 1 and r.boxes[0].label == "waist_folding"
        assert r.source_attributes["unknown_xml_labels"] == ["d"] and "label_conflict" not in r.source_attributes
        # same coil id -> same seeded split
        assert catalog.get(make_key("gc10", f"1/{a}.jpg")).split == catalog.get(make_key("gc10", f"1/{b}.jpg")).split


def test_gc10_kaggle_layout(tmp_path, cli, workspace):
    root = tmp_path / "gc10_kaggle"
    save(noise_image(SIZE, "L", seed=7), root / "images/images/1_chongkong/img_05_1_00001.jpg")
    save(noise_image(SIZE, "L", seed=8), root / "images/images/9_zhehen/img_06_2_00001.jpg")
    voc(root / "label/label/img_06_2_00001.xml", [("9_zhehen", 3, 3, 40, 40), ("5_youban", 60, 5, 80, 20)])
    out = cli("ingest", "gc10", "--root", str(root), "--workers", "1")
    assert out["records"] == 2 and out["quarantined"] == 0
    assert out["by_defect_type"] == {"fold": 1, "oil_spot": 1, "punching_hole": 1}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("gc10", "images/images/9_zhehen/img_06_2_00001.jpg"))
        assert r.source_labels == ["9_zhehen", "5_youban"] and r.defect_types == ["fold", "oil_spot"]
        assert [b.label for b in r.boxes] == ["fold", "oil_spot"]
