"""NEU-DET (both layouts) and NEU-CLS, written in their native layouts under tmp_path."""

from pathlib import Path

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.neu_cls import parse_cls_name
from imdd_build.sources.neu_det import NeuDetAdapter, neu_class_of
from imdd_build.workspace import Workspace

SIZE = (48, 48)


def voc(path: Path, filename: str, objects: list[tuple[str, int, int, int, int]]) -> Path:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>cr</folder><filename>{filename}</filename><size><width>{SIZE[0]}"
                    f"</width><height>{SIZE[1]}</height><depth>1</depth></size>{objs}</annotation>")
    return path


def img(path: Path, seed: int) -> Path:
    # NEU images are gray content stored as 3-channel JPEG
    return save(noise_image(SIZE, "L", seed=seed).convert("RGB"), path, "JPEG")


def test_class_prefix_never_splits_on_underscore():
    assert neu_class_of("rolled-in_scale_12") == "rolled-in_scale"
    assert neu_class_of("Pitted_Surface_3") == "pitted_surface"
    assert neu_class_of("rolled_in_scale_1") == "rolled-in_scale"
    assert neu_class_of("inclusions_1") is None and neu_class_of("pitted_1") is None
    assert parse_cls_name("PS_12") == ("PS", "pitted_surface", "12")
    assert parse_cls_name("pa7") == ("Pa", "patches", "7")
    assert parse_cls_name("rolled-in_scale_4") == ("rolled-in_scale", "rolled-in_scale", "4")
    assert parse_cls_name("Xy_1") is None


def write_neu_det_original(root: Path) -> None:
    d = root / "NEU-DET"
    img(d / "IMAGES/crazing_1.jpg", 1)
    voc(d / "ANNOTATIONS/crazing_1.xml", "crazing_1", [("crazing", 2, 3, 20, 30)])  # no extension
    img(d / "IMAGES/rolled-in_scale_12.jpg", 2)
    voc(d / "ANNOTATIONS/rolled-in_scale_12.xml", "Rolled-in_Scale_12.JPG",
        [("rolled-in_scale", 5, 6, 15, 16), ("rolled-in_scale", 30, 30, 44, 40)])
    img(d / "IMAGES/pitted_surface_3.JPG", 3)  # upper-case extension
    voc(d / "ANNOTATIONS/pitted_surface_3.xml", "pitted_surface_3.jpg", [("pitted_surface", 0, 0, 47, 47)])
    img(d / "IMAGES/patches_5.jpg", 4)  # no XML: still ingested, no boxes
    voc(d / "ANNOTATIONS/scratches_9.xml", "scratches_9.jpg", [("scratches", 1, 1, 9, 9)])  # no image
    img(d / "IMAGES/inclusion_2.jpg", 5)
    (d / "ANNOTATIONS/inclusion_2.xml").write_text("<annotation><object>")  # broken XML
    (d / "IMAGES/._crazing_1.jpg").write_bytes(b"\x00\x05\x16\x07")
    (d / "IMAGES/Thumbs.db").write_bytes(b"\x00")
    img(root / "__MACOSX/NEU-DET/IMAGES/crazing_1.jpg", 9)


def test_neu_det_original_layout(tmp_path, cli, workspace):
    root = tmp_path / "neu"
    write_neu_det_original(root)
    out = cli("ingest", "neu_det", "--root", str(root), "--workers", "1")
    assert out["records"] == 4 and out["by_label"] == {"defective": 4}
    assert sum(out["by_split"].values()) == 4
    assert out["by_defect_type"] == {"crazing": 1, "patches": 1, "pit": 1, "rolled_in_scale": 1}
    quarantine = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(quarantine) == {"ANNOTATIONS/inclusion_2.xml", "ANNOTATIONS/scratches_9.xml"}
    assert "not readable VOC XML" in quarantine["ANNOTATIONS/inclusion_2.xml"]
    assert "no image" in quarantine["ANNOTATIONS/scratches_9.xml"]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("neu_det", "IMAGES/rolled-in_scale_12.jpg"))
        assert r.source_labels == ["rolled-in_scale"] and r.defect_types == ["rolled_in_scale"]
        assert r.split_origin == "seeded" and r.source_split == "" and r.domain == "steel_strip"
        assert len(r.boxes) == 2
        x0, y0 = r.geometry.to_canvas(5, 6)
        x1, y1 = r.geometry.to_canvas(16, 17)  # inclusive VOC corners -> exclusive
        b = r.boxes[0]
        assert (b.label, b.x0, b.y0, b.x1, b.y1) == pytest.approx(("rolled_in_scale", x0, y0, x1, y1), abs=0.01)
        r = catalog.get(make_key("neu_det", "IMAGES/pitted_surface_3.JPG"))
        assert r.source_labels == ["pitted_surface"] and r.defect_types == ["pit"] and len(r.boxes) == 1
        r = catalog.get(make_key("neu_det", "IMAGES/patches_5.jpg"))
        assert r.boxes == [] and r.source_attributes == {"annotation": "missing"} and r.label == "defective"
    # pointing at NEU-DET itself gives the same keys: nothing new is written
    again = cli("ingest", "neu_det", "--root", str(root / "NEU-DET"), "--workers", "1")
    assert again["records"] == 4 and again["unchanged"] == 4 and again["written"] == 0


def test_neu_det_kaggle_layout_and_stray_xml(tmp_path, cli, workspace):
    d = tmp_path / "NEU-DET"
    for split, items in {"train": [("crazing_10", "crazing"), ("pitted_surface_11", "pitted_surface")],
                         "validation": [("scratches_7", "scratches"), ("rolled-in_scale_8", "rolled-in_scale")]}.items():
        for i, (stem, cls) in enumerate(items):
            img(d / split / "images" / cls / f"{stem}.jpg", 20 + i)
            ann_split = "train" if stem == "scratches_7" else split  # stray XML in the other split
            voc(d / ann_split / "annotations" / f"{stem}.xml", f"{stem}.jpg", [(cls, 4, 4, 12 + i, 12)])
    out = cli("ingest", "neu_det", "--root", str(d), "--workers", "1")
    assert out["records"] == 4 and out["quarantined"] == 0
    assert out["by_split"] == {"train": 2, "validation": 2}
    assert out["by_defect_type"] == {"crazing": 1, "pit": 1, "rolled_in_scale": 1, "scratch": 1}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("neu_det", "validation/images/scratches/scratches_7.jpg"))
        assert r.split == "validation" and r.split_origin == "official" and r.source_split == "validation"
        assert r.source_attributes == {"annotation_split": "train"} and len(r.boxes) == 1
        assert r.boxes[0].label == "scratch"


def test_neu_det_wrong_root(tmp_path):
    (tmp_path / "x/images").mkdir(parents=True)
    with pytest.raises(RootError, match="no NEU-DET layout"):
        NeuDetAdapter(tmp_path / "x")


def test_neu_cls(tmp_path, cli, workspace):
    d = tmp_path / "NEU surface defect database"
    for i, code in enumerate(["Cr", "In", "Pa", "PS", "RS", "Sc"]):
        save(noise_image(SIZE, "L", seed=40 + i), d / f"{code}_{i + 1}.bmp")
    save(noise_image(SIZE, "L", seed=50), d / "ps_7.BMP")  # code in other case, upper-case extension
    save(noise_image(SIZE, "L", seed=51), d / "copy" / "Cr_1.bmp")  # stray nested copy
    save(noise_image(SIZE, "L", seed=52), d / "Xy_1.bmp")  # no class code
    (d / "Thumbs.db").write_bytes(b"\x00")
    (d / "readme.txt").write_text("NEU-CLS\n")
    out = cli("ingest", "neu_cls", "--root", str(tmp_path), "--workers", "1")
    assert out["records"] == 7 and out["by_label"] == {"defective": 7}
    assert sum(out["by_split"].values()) == 7
    assert out["by_defect_type"] == {"crazing": 1, "inclusion": 1, "patches": 1, "pit": 2,
                                     "rolled_in_scale": 1, "scratch": 1}
    quarantine = {q["path"]: q["reason"] for q in out["quarantine"]}
    base = "NEU surface defect database"
    assert set(quarantine) == {f"{base}/copy/Cr_1.bmp", f"{base}/Xy_1.bmp"}
    assert "duplicate of" in quarantine[f"{base}/copy/Cr_1.bmp"]
    assert "no NEU class code" in quarantine[f"{base}/Xy_1.bmp"]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("neu_cls", f"{base}/ps_7.BMP"))
        assert r.source_labels == ["PS"] and r.defect_types == ["pit"] and r.split_origin == "seeded"
        assert r.source_split == "" and r.orig_format == "BMP" and r.source_attributes == {"number": 7}
