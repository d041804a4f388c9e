import pytest

from fixtures import write_visa_pytorch, write_visa_raw
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.visa import VisAAdapter
from imdd_build.workspace import Workspace


def test_raw_layout_split_from_csv_class_masks_binarized(tmp_path, cli, workspace):
    expected = write_visa_raw(tmp_path / "visa")
    assert VisAAdapter(tmp_path / "visa").layout() == "raw"
    out = cli("ingest", "visa", "--root", str(tmp_path / "visa"), "--workers", "2")
    assert out["records"] == expected["records"]
    assert out["by_split"] == expected["by_split"] and out["by_label"] == expected["by_label"]
    # image_anno.csv names plus the classes the mask values name by VisA's id2class table (the fixture's
    # masks carry values 1 and 2 everywhere: pcb1 Bent/Melt, candle Chunk Of Wax Missing/Damaged Corner)
    assert out["by_defect_type"] == {"damaged_corner_of_packaging": 2, "deformation": 3, "melt": 3,
                                     "missing_part": 2, "scratch": 2}
    assert {q["path"] for q in out["quarantine"]} == expected["quarantined"]
    assert "not found" in out["quarantine"][0]["reason"]
    assert "quarantined visa:candle/Data/Images/Normal/0999.JPG: listed in split_csv/1cls.csv line" in cli.last.stderr
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get("visa/pcb1/data/images/anomaly/000")
        assert r.image_format == "jpeg" and r.orig_format == "JPEG" and r.domain == "pcb"
        assert r.source_labels == ["scratch", "bent"] and r.split == "test"
        # class indices 1 and 2 were binarized: two regions, one box each
        assert r.attributes.regions == 2 and len(r.boxes) == 2
        assert catalog.get("visa/candle/data/images/normal/0000").split == "train"


def test_pytorch_layout_detected(tmp_path, cli):
    expected = write_visa_pytorch(tmp_path / "visa_pytorch")
    assert VisAAdapter(tmp_path / "visa_pytorch").layout() == "pytorch"
    out = cli("ingest", "visa", "--root", str(tmp_path / "visa_pytorch"), "--workers", "1")
    assert out["records"] == expected["records"] and out["by_label"] == expected["by_label"]
    assert out["by_split"] == expected["by_split"] and out["quarantined"] == 0
    assert out["by_defect_type"] == {"anomaly": 2}


def test_unrecognised_root_is_a_run_level_error(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RootError, match="neither the raw VisA layout"):
        list(VisAAdapter(tmp_path / "empty").samples())
    out = cli("ingest", "visa", "--root", str(tmp_path / "empty"), expect=2)
    assert "neither the raw VisA layout" in out["error"]
    out = cli("ingest", "visa", "--root", str(tmp_path / "missing"), expect=2)
    assert "not a directory" in out["error"]
