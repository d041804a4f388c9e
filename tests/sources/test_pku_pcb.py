from pathlib import Path

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError, seeded_split
from imdd_build.sources.pku_pcb import PKUPCBAdapter
from imdd_build.workspace import Workspace

SIZE = (96, 64)


def voc(path: Path, filename: str, objects: list[tuple[str, int, int, int, int]]) -> None:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1 in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>x</folder><filename>{filename}</filename><size><width>{SIZE[0]}</width>"
                    f"<height>{SIZE[1]}</height><depth>3</depth></size>{objs}</annotation>")


def write_pku(root: Path) -> None:
    d = root / "PCB_DATASET"
    save(noise_image(SIZE, seed=1), d / "images/Missing_hole/01_missing_hole_01.jpg")
    voc(d / "Annotations/Missing_hole/01_missing_hole_01.xml", "01_missing_hole_01.jpg",
        [("missing_hole", 10, 10, 19, 19), ("missing_hole", 40, 30, 49, 41)])
    save(noise_image(SIZE, seed=2), d / "images/Short/04_short_01.JPG", "JPEG")  # upper-case extension
    voc(d / "Annotations/Short/04_short_01.xml", "04_short_01.jpg", [("short", 5, 6, 30, 20)])
    save(noise_image(SIZE, seed=3), d / "images/Spur/05_spur_02.jpg")  # no XML
    save(noise_image(SIZE, seed=4), d / "images/Open_circuit/01_open_circuit_03.jpg")
    (d / "Annotations/Open_circuit").mkdir(parents=True)
    (d / "Annotations/Open_circuit/01_open_circuit_03.xml").write_text("<annotation><object>")  # broken
    save(noise_image(SIZE, seed=5), d / "PCB_USED/01.JPG", "JPEG")
    save(noise_image(SIZE, seed=6), d / "PCB_USED/04.JPG", "JPEG")
    save(noise_image(SIZE, seed=7), d / "rotation/Missing_hole_rotation/01_missing_hole_01.jpg")
    voc(d / "rotation/Missing_hole_rotation/01_missing_hole_01.xml", "01_missing_hole_01.jpg",
        [("missing_hole", 50, 20, 59, 29)])
    save(noise_image(SIZE, seed=8), d / "rotation/Short_rotation/04_short_01.jpg")  # no XML: class only
    (d / "images/Short/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def test_boxes_templates_board_grouped_split_rotation_skipped(tmp_path, cli, workspace):
    write_pku(tmp_path / "pku")
    out = cli("ingest", "pku_pcb", "--root", str(tmp_path / "pku"), "--workers", "1")
    assert out["records"] == 4 and out["by_label"] == {"defective": 2, "normal": 2}
    assert sum(out["by_split"].values()) == 4
    assert out["by_defect_type"] == {"missing_hole": 1, "short_circuit": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == {"PCB_DATASET/images/Spur/05_spur_02.jpg",
                            "PCB_DATASET/images/Open_circuit/01_open_circuit_03.jpg"}
    assert reasons["PCB_DATASET/images/Spur/05_spur_02.jpg"] == "annotation Annotations/Spur/05_spur_02.xml not found"
    assert "not readable VOC XML" in reasons["PCB_DATASET/images/Open_circuit/01_open_circuit_03.jpg"]
    with Workspace(workspace).catalog() as catalog:
        mh = catalog.get(make_key("pku_pcb", "PCB_DATASET/images/Missing_hole/01_missing_hole_01.jpg"))
        assert mh.source_labels == ["missing_hole"] and mh.defect_types == ["missing_hole"]
        assert mh.domain == "bare_pcb" and mh.split_origin == "seeded" and mh.source_split == ""
        assert mh.split == seeded_split("pku_pcb", "1") and mh.source_attributes == {"board": "1"}
        assert len(mh.boxes) == 2
        for box, (x0, y0, x1, y1) in zip(mh.boxes, [(10, 10, 20, 20), (40, 30, 50, 42)]):  # VOC inclusive
            assert box.label == "missing_hole"
            assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx(
                (*mh.geometry.to_canvas(x0, y0), *mh.geometry.to_canvas(x1, y1)), abs=0.01)
        short = catalog.get(make_key("pku_pcb", "PCB_DATASET/images/Short/04_short_01.JPG"))
        assert short.defect_types == ["short_circuit"] and short.source_labels == ["short"]
        template = catalog.get(make_key("pku_pcb", "PCB_DATASET/PCB_USED/01.JPG"))
        assert template.label == "normal" and template.source_labels == ["PCB_USED"]
        assert template.split == mh.split  # the board's template and its defective images share a split
        assert catalog.get(make_key("pku_pcb", "PCB_DATASET/PCB_USED/04.JPG")).split == short.split
        assert catalog.get(make_key("pku_pcb", "PCB_DATASET/rotation/Missing_hole_rotation/01_missing_hole_01.jpg")) is None


def test_rotation_option_and_category_filter(tmp_path):
    write_pku(tmp_path / "pku")
    samples = [s for s in PKUPCBAdapter(tmp_path / "pku", rotation=True).samples() if hasattr(s, "rel_path")]
    rotated = {s.rel_path: s for s in samples if s.attributes.get("rotated")}
    assert len(samples) == 6 and len(rotated) == 2
    with_xml = rotated["PCB_DATASET/rotation/Missing_hole_rotation/01_missing_hole_01.jpg"]
    assert with_xml.boxes == [("missing_hole", 50.0, 20.0, 60.0, 30.0)] and with_xml.label == "defective"
    no_xml = rotated["PCB_DATASET/rotation/Short_rotation/04_short_01.jpg"]
    assert no_xml.boxes == [] and no_xml.source_labels == ["Short"]
    # the root may be PCB_DATASET itself: same paths
    inner = [s.rel_path for s in PKUPCBAdapter(tmp_path / "pku/PCB_DATASET", rotation=True).samples()
             if hasattr(s, "rel_path")]
    assert inner == [s.rel_path for s in samples]
    only = [s for s in PKUPCBAdapter(tmp_path / "pku", categories=["Short"]).samples()]
    assert [s.rel_path for s in only] == ["PCB_DATASET/images/Short/04_short_01.JPG"]
    (tmp_path / "x").mkdir()
    with pytest.raises(RootError, match="no images/"):
        list(PKUPCBAdapter(tmp_path / "x").samples())


def test_rotation_via_cli_opt(tmp_path, cli):
    write_pku(tmp_path / "pku")
    out = cli("ingest", "pku_pcb", "--root", str(tmp_path / "pku/PCB_DATASET"), "--workers", "1")
    assert out["records"] == 4 and out["quarantined"] == 2
    out = cli("ingest", "pku_pcb", "--root", str(tmp_path / "pku"), "--workers", "1", "--opt", "rotation=true")
    assert out["records"] == 6 and out["by_defect_type"] == {"missing_hole": 2, "short_circuit": 2}
