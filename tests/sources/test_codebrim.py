"""CODEBRIM: original photos (per-image XML, defects.xml/background.xml) and classification patches."""

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.codebrim import CodebrimAdapter
from imdd_build.workspace import Workspace

SIZE = (80, 60)
FLAGS = ("Background", "Crack", "Spallation", "Efflorescence", "ExposedBars", "CorrosionStain")


def flags(on: set[str], names=FLAGS, value="1") -> str:
    return "".join(f"<{n}>{value if n in on else '0'}</{n}>" for n in names)


def test_codebrim_original(tmp_path, cli, workspace):
    d = tmp_path / "CODEBRIM" / "original_dataset"
    for i in range(1, 6):
        save(noise_image(SIZE, seed=i), d / "images" / f"image_{i:07d}.jpg")
    ann = d / "annotations"
    ann.mkdir(parents=True)
    # multi-label box + a background-only box
    (ann / "image_0000001.xml").write_text(
        "<annotation><filename>image_0000001.jpg</filename>"
        f"<object><name>Defect</name><bndbox><xmin>10</xmin><ymin>5</ymin><xmax>39</xmax><ymax>24</ymax></bndbox>"
        f"<Defect>{flags({'Crack', 'Spallation'})}</Defect></object>"
        f"<object><name>Defect</name><bndbox><xmin>50</xmin><ymin>40</ymin><xmax>70</xmax><ymax>55</ymax></bndbox>"
        f"<Defect>{flags({'Background'})}</Defect></object></annotation>")
    (ann / "image_0000005.xml").write_text("<annotation><object>")  # unreadable
    # the defects.xml variant with tolerant element names and 1.0 flags
    tolerant = ("background", "crack", "spallation", "efflorescence", "exposed_bars", "Corrosion_Stain")
    (d / "defects.xml").write_text(
        '<Defects><Defect name="image_0000002.jpg"><xmin>0</xmin><ymin>0</ymin><xmax>19</xmax><ymax>19</ymax>'
        f"{flags({'exposed_bars', 'Corrosion_Stain'}, tolerant, '1.0')}</Defect></Defects>")
    (d / "background.xml").write_text(f'<Backgrounds><Background name="image_0000003.jpg">{flags({"Background"})}'
                                      "</Background></Backgrounds>")
    (d / "images" / ".DS_Store").write_bytes(b"\x00")
    out = cli("ingest", "codebrim", "--root", str(tmp_path / "CODEBRIM"), "--workers", "1")
    assert out["records"] == 3 and out["by_label"] == {"defective": 2, "normal": 1}
    assert out["by_defect_type"] == {"corrosion_stain": 1, "crack": 1, "exposed_rebar": 1, "spallation": 1}
    quarantine = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(quarantine) == {"original_dataset/annotations/image_0000005.xml",
                               "original_dataset/images/image_0000004.jpg"}
    assert "not annotated" in quarantine["original_dataset/images/image_0000004.jpg"]
    assert "not readable XML" in quarantine["original_dataset/annotations/image_0000005.xml"]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("codebrim", "original_dataset/images/image_0000001.jpg"))
        assert r.source_labels == ["Crack", "Spallation"] and r.defect_types == ["crack", "spallation"]
        assert r.source_attributes == {"background_boxes": 1, "multi_label": True}
        assert [b.label for b in r.boxes] == ["crack", "spallation"] and r.split_origin == "seeded"
        x0, y0 = r.geometry.to_canvas(10, 5)
        x1, y1 = r.geometry.to_canvas(40, 25)
        assert (r.boxes[0].x0, r.boxes[0].y0, r.boxes[0].x1, r.boxes[0].y1) == pytest.approx((x0, y0, x1, y1), abs=0.01)
        r = catalog.get(make_key("codebrim", "original_dataset/images/image_0000002.jpg"))
        assert r.source_labels == ["ExposedBars", "CorrosionStain"]
        assert r.defect_types == ["exposed_rebar", "corrosion_stain"] and len(r.boxes) == 2
        r = catalog.get(make_key("codebrim", "original_dataset/images/image_0000003.jpg"))
        assert r.label == "normal" and r.source_labels == ["Background"] and r.domain == "concrete"
    # pointing at original_dataset itself keeps the keys
    again = cli("ingest", "codebrim", "--root", str(d), "--workers", "1")
    assert again["unchanged"] == 3 and again["written"] == 0


def test_codebrim_patches(tmp_path, cli, workspace):
    d = tmp_path / "classification_dataset"
    save(noise_image((32, 32), seed=1), d / "train/defects/image_0000001_crop_0000001.png")
    save(noise_image((32, 32), seed=2), d / "val/defects/image_0000002_crop_0000001_-_1.png")  # augmented name
    save(noise_image((32, 32), seed=3), d / "test/background/image_0000003_crop_0000002.png")
    save(noise_image((32, 32), seed=4), d / "test/crack/image_0000004_crop_0000001.png")  # per-class copy
    save(noise_image((32, 32), seed=5), d / "train/defects/image_0000009_crop_0000001.png")  # not in metadata
    (d / "metadata").mkdir(parents=True)
    (d / "metadata/defects.xml").write_text(
        f'<Defects><Defect name="image_0000001_crop_0000001.png">{flags({"Crack", "Efflorescence"})}</Defect>'
        f'<Defect name="image_0000002_crop_0000001.png">{flags({"ExposedBars"})}</Defect></Defects>')
    (d / "metadata/background.xml").write_text(
        f'<Backgrounds><Background name="image_0000003_crop_0000002.png">{flags({"Background"})}</Background>'
        "</Backgrounds>")
    out = cli("ingest", "codebrim", "--root", str(d), "--workers", "1")
    assert out["records"] == 4 and out["by_split"] == {"test": 2, "train": 1, "validation": 1}
    assert out["by_label"] == {"defective": 3, "normal": 1}
    assert out["by_defect_type"] == {"crack": 2, "efflorescence": 1, "exposed_rebar": 1}
    assert [q["path"] for q in out["quarantine"]] == [
        "classification_dataset/train/defects/image_0000009_crop_0000001.png"]
    assert "not annotated in metadata/defects.xml" in out["quarantine"][0]["reason"]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("codebrim", "classification_dataset/train/defects/image_0000001_crop_0000001.png"))
        assert r.source_labels == ["Crack", "Efflorescence"] and r.split == "train" and r.split_origin == "official"
        assert r.source_attributes == {"parent_image": "image_0000001", "multi_label": True} and r.boxes == []
        r = catalog.get(make_key("codebrim", "classification_dataset/val/defects/image_0000002_crop_0000001_-_1.png"))
        assert r.split == "validation" and r.source_split == "val" and r.defect_types == ["exposed_rebar"]
        r = catalog.get(make_key("codebrim", "classification_dataset/test/crack/image_0000004_crop_0000001.png"))
        assert r.source_labels == ["Crack"]


def test_codebrim_wrong_root(tmp_path):
    (tmp_path / "x" / "photos").mkdir(parents=True)
    with pytest.raises(RootError, match="no CODEBRIM layout"):
        CodebrimAdapter(tmp_path / "x")


