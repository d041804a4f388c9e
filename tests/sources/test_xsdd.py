"""X-SDD: seven class folders with varying spellings (blanks, underscores, hyphens, case)."""

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.xsdd import XsddAdapter, xsdd_class
from imdd_build.workspace import Workspace

SIZE = (32, 32)


def test_class_spellings():
    assert xsdd_class("oxide scale of plate system") == "oxide_scale_of_plate_system"
    assert xsdd_class("Oxide-Scale-of-Temperature-System") == "oxide_scale_of_temperature_system"
    assert xsdd_class("RED IRON") == "red_iron" and xsdd_class("Red iron sheet") == "red_iron"
    assert xsdd_class("oxide scale") is None


def test_xsdd_github_layout(tmp_path, cli, workspace):
    root = tmp_path / "repo"
    datas = root / "X-SDD" / "datas"
    folders = {"finishing roll printing": ".png", "Iron_Sheet_Ash": ".jpg", "oxide-scale-of-plate-system": ".jpg",
               "oxide scale of temperature system": ".JPG", "RED IRON": ".png", "slag_inclusion": ".bmp",
               "surface scratch": ".jpg"}
    for i, (folder, ext) in enumerate(folders.items()):
        for j in range(2):
            save(noise_image(SIZE, seed=10 * i + j), datas / folder / f"{i + 1}00{j + 1}{ext}")
    save(noise_image(SIZE, seed=99), datas / "misc" / "0001.png")  # not a class
    (datas / "surface scratch" / "Thumbs.db").write_bytes(b"\x00")
    (datas / "RED IRON" / ".hidden.png").write_bytes(b"\x00")
    out = cli("ingest", "xsdd", "--root", str(root), "--workers", "1")
    assert out["records"] == 14 and out["by_label"] == {"defective": 14}
    assert sum(out["by_split"].values()) == 14
    assert out["by_defect_type"] == {"inclusion": 2, "oxide_scale": 6, "red_iron": 2, "roll_printing": 2,
                                     "scratch": 2}
    assert [(q["path"], q["reason"]) for q in out["quarantine"]] == [
        ("misc/0001.png", "folder 'misc' is no X-SDD class")]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("xsdd", "oxide-scale-of-plate-system/3001.jpg"))
        assert r.source_labels == ["oxide_scale_of_plate_system"] and r.defect_types == ["oxide_scale"]
        assert r.source_attributes == {"folder": "oxide-scale-of-plate-system"}
        assert r.split_origin == "seeded" and r.source_split == "" and r.domain == "steel_strip"
        r = catalog.get(make_key("xsdd", "RED IRON/5001.png"))
        assert r.source_labels == ["red_iron"] and r.boxes == []


def test_xsdd_split_folders_are_official(tmp_path, cli, workspace):
    root = tmp_path / "xsdd"
    save(noise_image(SIZE, seed=1), root / "train" / "red_iron" / "1.jpg")
    save(noise_image(SIZE, seed=2), root / "train" / "Surface_Scratch" / "2.jpg")
    save(noise_image(SIZE, seed=3), root / "test" / "red iron" / "3.jpg")
    out = cli("ingest", "xsdd", "--root", str(root), "--workers", "1")
    assert out["by_split"] == {"test": 1, "train": 2} and out["quarantined"] == 0
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("xsdd", "test/red iron/3.jpg"))
        assert r.split_origin == "official" and r.source_split == "test"


def test_xsdd_wrong_root(tmp_path):
    (tmp_path / "nothing" / "cats").mkdir(parents=True)
    with pytest.raises(RootError, match="no X-SDD class folders"):
        XsddAdapter(tmp_path / "nothing")
