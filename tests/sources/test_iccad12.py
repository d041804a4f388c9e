"""ICCAD 2012 image form: iccad1..5/{train,test}/ PNG clips, class by sub-folder or by file name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.iccad12 import ICCAD12Adapter, classify
from imdd_build.workspace import Workspace


def clip(path, seed: int, mode: str = "1", size: int = 48):
    """A layout-like clip: a few axis-aligned rectangles (polygons) on black, bilevel or gray."""
    rng = np.random.default_rng(seed)
    a = np.zeros((size, size), np.uint8)
    for _ in range(4):
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(3, 12, 2)
        a[y0:y0 + h, x0:x0 + w] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "L").convert(mode).save(path, "PNG")
    return path


def write_iccad(root):
    top = root / "iccad-official"  # the tarball's wrapper folder
    for i in range(2):
        clip(top / "iccad1/train/HS" / f"{i}.png", i)
    for i in range(3):
        clip(top / "iccad1/train/NHS" / f"{i}.png", 10 + i, mode="L")
    (top / "iccad1/train/label.csv").write_text("1\n1\n0\n0\n0\n")  # feature CSVs from the repo: ignored
    (top / "iccad1/train/dc.csv").write_text("0.1,0.2\n")
    clip(top / "iccad1/test/hotspot/0.png", 20)
    clip(top / "iccad1/test/non-hotspot/0.png", 21)
    clip(top / "iccad1/test/non-hotspot/1.png", 22)
    # iccad2: capitalised split folders, class in the file name, odd extension case
    clip(top / "iccad2/Train/HS12.png", 30)
    clip(top / "iccad2/Train/NHS_0003.PNG", 31)
    clip(top / "iccad2/Train/iccad2_hotspot_7.png", 32)
    clip(top / "iccad2/Train/nonhotspot-4.png", 33)
    clip(top / "iccad2/Train/clip5.png", 34)  # no class anywhere -> quarantined
    clip(top / "iccad2/Train/.HS99.png", 35)  # hidden -> ignored
    clip(top / "iccad2/Test/non_hotspots/a.png", 36)
    clip(top / "iccad2/Test/Hotspots/b.png", 37)
    # a second copy of benchmark 1 under another spelling -> quarantined as a folder
    clip(top / "ICCAD-1/train/HS/0.png", 40)
    clip(top / "iccad3/stray.png", 50)  # outside train/test -> quarantined
    clip(top / "iccad3/test/NHS/0.png", 51)
    clip(top / "__MACOSX/iccad4/train/HS/0.png", 60)  # ignored
    (top / "README.txt").write_text("ICCAD 2012 clips\n")


def test_classify_spellings():
    assert classify("HS") == ("HS", True) and classify("NHS") == ("NHS", False)
    assert classify("non-hotspot") == ("non-hotspot", False) and classify("Hotspots") == ("Hotspots", True)
    assert classify("nhs_0003") == ("nhs", False) and classify("HS12") == ("HS", True)
    assert classify("iccad2_hotspot_7") == ("hotspot", True) and classify("clip5") is None
    assert classify("ships") is None  # 'hs' inside a word is not a class


def test_ingest_folders_file_names_and_quarantine(tmp_path, cli, workspace):
    write_iccad(tmp_path / "iccad")
    out = cli("ingest", "iccad12", "--root", str(tmp_path / "iccad"), "--workers", "1")
    assert out["records"] == 15
    assert out["by_split"] == {"train": 9, "test": 6}
    assert out["by_label"] == {"defective": 6, "normal": 9}
    assert out["by_defect_type"] == {"lithography_hotspot": 6}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == {"ICCAD-1", "iccad2/Train/clip5.png", "iccad3/stray.png"}
    assert reasons["ICCAD-1"] == "second copy of benchmark iccad1 (using iccad1/)"
    assert "class not given by folder or file name" in reasons["iccad2/Train/clip5.png"]
    assert reasons["iccad3/stray.png"] == "image outside a train/ or test/ folder"
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("iccad12", "iccad2/Train/NHS_0003.PNG"))
        assert r.label == "normal" and r.source_labels == ["NHS"] and r.defect_types == []
        assert r.product == "iccad2" and r.split == "train" and r.source_split == "Train"
        assert r.domain == "ic_layout" and r.split_origin == "official" and r.orig_mode == "1"
        hs = catalog.get(make_key("iccad12", "iccad2/Test/Hotspots/b.png"))
        assert hs.label == "defective" and hs.source_labels == ["Hotspots"]
        assert hs.defect_types == ["lithography_hotspot"] and hs.mask is None and hs.boxes == []
        assert hs.split == "test" and hs.source_split == "Test"
        folder = catalog.get(make_key("iccad12", "iccad1/test/non-hotspot/1.png"))
        assert folder.label == "normal" and folder.source_labels == ["non-hotspot"] and folder.product == "iccad1"
        named = catalog.get(make_key("iccad12", "iccad2/Train/iccad2_hotspot_7.png"))
        assert named.source_labels == ["hotspot"] and named.defect_types == ["lithography_hotspot"]
        assert catalog.get(make_key("iccad12", "iccad1/train/NHS/2.png")).orig_mode == "L"
    again = cli("ingest", "iccad12", "--root", str(tmp_path / "iccad"), "--workers", "1")
    assert again["written"] == 0 and again["unchanged"] == 15


def test_category_filter_and_root_level_benchmarks(tmp_path):
    write_iccad(tmp_path / "iccad")
    adapter = ICCAD12Adapter(tmp_path / "iccad", categories=["3"])
    items = list(adapter.samples())
    assert [getattr(i, "rel_path", None) or i.path for i in items] == ["iccad3/stray.png", "iccad3/test/NHS/0.png"]
    # the root may also be the wrapper folder itself: same relative paths
    direct = ICCAD12Adapter(tmp_path / "iccad" / "iccad-official", categories=["iccad3"])
    assert [s.rel_path for s in direct.samples() if hasattr(s, "rel_path")] == ["iccad3/test/NHS/0.png"]


def test_no_benchmarks_is_a_root_error(tmp_path, cli):
    (tmp_path / "empty" / "something").mkdir(parents=True)
    with pytest.raises(RootError, match="no benchmark folders"):
        list(ICCAD12Adapter(tmp_path / "empty").samples())
    out = cli("ingest", "iccad12", "--root", str(tmp_path / "empty"), expect=2)
    assert "no benchmark folders" in out["error"]
