import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.elpv import ELPVAdapter
from imdd_build.workspace import Workspace


def write_elpv(root):
    """The GitHub repository layout: data under src/elpv_dataset/data/, labels.csv without a header."""
    data = root / "elpv-dataset/src/elpv_dataset/data"
    for i in range(1, 8):
        save(noise_image((30, 30), "L", seed=i), data / f"images/cell{i:04d}.png")
    (data / "images/.DS_Store").write_bytes(b"x")
    (data / "labels.csv").write_text(
        "images/cell0001.png  1.0  mono\n"
        "images/cell0002.png\t0.0\tpoly\n"  # tabs
        "images/cell0003.png    0.3333333333333333 mono\n"
        "\n"
        "images/cell0004.png 0.6666666666666666   poly\n"
        "images/cell0099.png 0.0 mono\n"  # listed, no image
        "images/cell0005.png 1.0\n"  # a field missing
        "images/cell0006.png 1.5 mono\n")  # not a probability
    # cell0007.png is not listed at all


def test_ingest_probability_level_and_module_type(tmp_path, cli, workspace):
    write_elpv(tmp_path / "elpv")
    out = cli("ingest", "elpv", "--root", str(tmp_path / "elpv"), "--workers", "1")
    assert out["records"] == 4
    assert out["by_label"] == {"defective": 3, "normal": 1}
    assert sum(out["by_split"].values()) == 4 and set(out["by_split"]) <= {"train", "validation", "test"}
    assert out["by_defect_type"] == {"solar_cell_defect": 3}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert reasons == {
        "images/cell0099.png": "listed in labels.csv line 6 but not found",
        "labels.csv:7": "labels.csv line 7: expected 3 fields (path, probability, type), found 2",
        "labels.csv:8": "labels.csv line 8: probability 1.5 outside [0, 1]",
        "images/cell0007.png": "not listed in labels.csv (no label)",
    }
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("elpv", "images/cell0003.png"))
        assert r.label == "defective" and r.source_labels == ["defective"] and r.product == "mono"
        assert r.source_attributes == {"defect_probability": pytest.approx(1 / 3), "defect_level": 1,
                                       "module_type": "mono"}
        assert r.mask is None and not r.boxes and r.domain == "photovoltaic_cell"
        assert r.split_origin == "seeded" and r.source_split == ""
        assert catalog.get(make_key("elpv", "images/cell0004.png")).source_attributes["defect_level"] == 2
        assert catalog.get(make_key("elpv", "images/cell0001.png")).source_attributes["defect_level"] == 3
        n = catalog.get(make_key("elpv", "images/cell0002.png"))
        assert n.label == "normal" and n.source_labels == ["functional"] and n.defect_types == []
        assert n.source_attributes["defect_probability"] == 0.0 and n.product == "poly"


def test_category_filter_and_missing_labels(tmp_path, cli):
    write_elpv(tmp_path / "elpv")
    out = cli("ingest", "elpv", "--root", str(tmp_path / "elpv"), "--workers", "1", "--category", "poly")
    assert out["records"] == 2 and out["by_label"] == {"defective": 1, "normal": 1}
    (tmp_path / "other").mkdir()
    with pytest.raises(RootError, match="no labels.csv"):
        ELPVAdapter(tmp_path / "other")
