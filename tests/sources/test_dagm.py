import numpy as np
import pytest
from PIL import Image

from fixtures import blob_mask, noise_image, save
from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.dagm import DAGMAdapter
from imdd_build.workspace import Workspace

SIZE = (32, 32)  # tiny stand-in for 512x512


def _img(path, seed):
    save(noise_image(SIZE, "L", seed=seed), path, "PNG")


def write_dagm(root):
    """Class1 plain, Class2 nested one level deeper; upper-case .PNG; Labels.txt with a header."""
    c1 = root / "Class1"
    for i in (1, 2, 3):
        _img(c1 / f"Train/{i:04d}.PNG", i)
    save(blob_mask(SIZE, (4, 4, 20, 14)), c1 / "Train/Label/0003_label.PNG", "PNG")
    (c1 / "Train/Label/Labels.txt").write_text(
        "3\n"  # header/count line
        "1\t0\t0001.PNG\t0\t0\n"
        "2\t1\t0002.PNG\t0\t0002_label.PNG\n"  # says defective, but there is no label file
        "3\t1\t0003.PNG\t0\t0003_label.PNG\n"
        "4\t0\t0009.PNG\t0\t0\n")  # listed, no such image
    (c1 / "Train/Label/Thumbs.db").write_bytes(b"x")
    _img(c1 / "Test/0001.PNG", 11)
    _img(c1 / "Test/0002.PNG", 12)
    save(blob_mask(SIZE, (10, 10, 30, 20)), c1 / "Test/Label/0002_label.PNG", "PNG")
    c2 = root / "Class2/Class2"
    _img(c2 / "Train/0001.PNG", 21)
    _img(c2 / "Train/0002.PNG", 22)
    save(blob_mask(SIZE, (2, 2, 12, 30)), c2 / "Train/Label/0002_label.PNG", "PNG")
    _img(c2 / "Test/0001.PNG", 23)
    (root / "Class2/Class2/._Train").write_bytes(b"x")


def test_train_test_layout_label_files_decide(tmp_path, cli, workspace):
    write_dagm(tmp_path / "dagm")
    out = cli("ingest", "dagm", "--root", str(tmp_path / "dagm"), "--workers", "1")
    assert out["records"] == 8
    assert out["by_split"] == {"test": 3, "train": 5}
    assert out["by_label"] == {"defective": 3, "normal": 5}
    assert out["by_defect_type"] == {"anomaly": 3}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == {"Class1/Train/0009.PNG", "Class1/Train/Label/Labels.txt"}
    assert "listed in Class1/Train/Label/Labels.txt line 5 but not found" in reasons["Class1/Train/0009.PNG"]
    assert reasons["Class1/Train/Label/Labels.txt"].startswith("1 row(s) disagree")
    assert "0002.PNG flag 1 but no label file" in reasons["Class1/Train/Label/Labels.txt"]
    with Workspace(workspace).catalog() as catalog:
        d = catalog.get(make_key("dagm", "Class1/Train/0003.PNG"))
        assert d.label == "defective" and d.mask_source_path == "Class1/Train/Label/0003_label.PNG"
        assert d.source_split == "Train" and d.split == "train" and d.product == "Class1"
        assert d.domain == "synthetic_texture" and d.boxes and d.source_labels == []
        flagged = catalog.get(make_key("dagm", "Class1/Train/0002.PNG"))
        assert flagged.label == "normal" and flagged.source_attributes == {"labels_txt_flag": 1}
        nested = catalog.get(make_key("dagm", "Class2/Class2/Train/0002.PNG"))
        assert nested.label == "defective" and nested.product == "Class2"
        assert catalog.get(make_key("dagm", "Class1/Test/0001.PNG")).split == "test"


def test_category_filter_and_nested_root(tmp_path, cli):
    write_dagm(tmp_path / "dagm")
    out = cli("ingest", "dagm", "--root", str(tmp_path / "dagm"), "--workers", "1", "--category", "Class2")
    assert out["records"] == 3 and out["quarantined"] == 0
    # pointing one level higher gives the same paths (keys)
    a = {s.rel_path for s in DAGMAdapter(tmp_path / "dagm").samples() if hasattr(s, "rel_path")}
    (tmp_path / "outer").mkdir()
    (tmp_path / "dagm").rename(tmp_path / "outer/DAGM_2007")
    b = {s.rel_path for s in DAGMAdapter(tmp_path / "outer").samples() if hasattr(s, "rel_path")}
    assert a == b and "Class2/Class2/Test/0001.PNG" in a
    with pytest.raises(RootError, match="classes not found: class9"):
        DAGMAdapter(tmp_path / "outer", categories=["Class9"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RootError, match="no DAGM class folder"):
        DAGMAdapter(tmp_path / "empty")


def _ellipse(cx, cy, a, b, angle):
    yy, xx = np.mgrid[0:SIZE[1], 0:SIZE[0]].astype(float)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def test_original_def_folders_with_ellipse_parameters(tmp_path, cli, workspace):
    root = tmp_path / "dagm2007"
    for i in (1, 2):
        _img(root / f"Class3/{i}.png", 30 + i)
    for i in (1, 2, 3):
        _img(root / f"Class3_def/{i}.png", 40 + i)
    # assumed columns: number, semi-major, semi-minor, angle (rad), x-centre, y-centre
    (root / "Class3_def/labels.txt").write_text(
        "1\t10.0\t4.0\t0.5\t16.0\t12.0\n"
        "2  6  3  1.2  8  22\n"
        "5\t5\t2\t0\t10\t10\n")  # no image 5
    out = cli("ingest", "dagm", "--root", str(root), "--workers", "1")
    assert out["records"] == 5 and out["by_label"] == {"defective": 3, "normal": 2}
    assert [q["path"] for q in out["quarantine"]] == ["Class3_def/5"]
    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        r = catalog.get(make_key("dagm", "Class3_def/1.png"))
        assert r.split_origin == "seeded" and r.source_split == "" and r.product == "Class3"
        assert r.source_attributes["ellipse"] == [16.0, 12.0, 10.0, 4.0, 0.5]
        back = mask_to_original(np.asarray(Image.open(ws.store().path(r.mask))), r.geometry, *SIZE) > 0
        expected = _ellipse(16, 12, 10, 4, 0.5)
        assert (back & expected).sum() / (back | expected).sum() >= 0.9
        assert back[12, 16] and not back[12, 2]  # centre in, far along x out (a=10 along 0.5 rad)
        no_row = catalog.get(make_key("dagm", "Class3_def/3.png"))
        assert no_row.label == "defective" and no_row.mask is None
        assert no_row.source_attributes == {"mask_missing": True}
        assert catalog.get(make_key("dagm", "Class3/1.png")).label == "normal"
