import re
from pathlib import Path

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError, seeded_split
from imdd_build.sources.deeppcb import DeepPCBAdapter
from imdd_build.workspace import Workspace
from realdata import realdata, require

REALDATA = realdata("deeppcb")
CANON = {1: "open_circuit", 2: "short_circuit", 3: "mouse_bite", 4: "spur", 5: "spurious_copper", 6: "pin_hole"}


def write_pair(pcb: Path, group: str, pid: str, lines: list[str] | None, seed: int) -> None:
    save(noise_image((64, 64), "L", seed=seed), pcb / f"group{group}/{group}/{pid}_test.jpg")
    save(noise_image((64, 64), "L", seed=seed + 500), pcb / f"group{group}/{group}/{pid}_temp.jpg")
    if lines is not None:
        ann = pcb / f"group{group}/{group}_not/{pid}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("".join(f"{line}\n" for line in lines))


def write_deeppcb(root: Path) -> dict:
    pcb = root / "PCBData"
    write_pair(pcb, "10000", "10000000", ["4 5 20 30 1", "30 30 40 44 3"], 1)  # space separated
    write_pair(pcb, "10000", "10000001", ["1,2,10,10,2", "12,12,20,22,4", "40,40,50,60,5", "50,2,63,9,6"], 2)
    write_pair(pcb, "10000", "10000002", ["8 8 16 16 1", ""], 3)  # in no list: seeded; blank line
    write_pair(pcb, "20000", "20000000", ["0 0 8 8 6"], 4)
    write_pair(pcb, "20000", "20000001", None, 5)  # annotation file missing
    write_pair(pcb, "20000", "20000002", ["1 1 9 9 7"], 6)  # unknown type code
    (pcb / "trainval.txt").write_text(
        "group10000/10000/10000000.jpg group10000/10000_not/10000000.txt\n"
        "group10000/10000/10000001.jpg group10000/10000_not/10000001.txt\n")
    (pcb / "test.txt").write_text(
        "group20000/20000/20000000.jpg group20000/20000_not/20000000.txt\n"
        "group20000/20000/20000009.jpg group20000/20000_not/20000009.txt\n"
        "group20000/20000/20000001.jpg group20000/20000_not/20000001.txt\n"
        "group20000/20000/20000002.jpg group20000/20000_not/20000002.txt\n")
    (root / "evaluation").mkdir(parents=True)
    (root / "evaluation/gt.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (root / "README.md").write_text("DeepPCB\n")
    (pcb / "group10000/10000/._10000000_test.jpg").write_bytes(b"\x00\x05\x16\x07")
    seeded = seeded_split("deeppcb", "group10000/10000/10000002")
    by_split = {"train": 4, "test": 4}
    by_split[seeded] = by_split.get(seeded, 0) + 2
    return {"records": 10, "by_split": by_split, "by_label": {"defective": 4, "normal": 6}, "seeded": seeded}


def test_pairs_templates_lists_boxes_and_quarantine(tmp_path, cli, workspace):
    expected = write_deeppcb(tmp_path / "DeepPCB")
    out = cli("ingest", "deeppcb", "--root", str(tmp_path / "DeepPCB"), "--workers", "1")
    assert out["records"] == expected["records"]
    assert out["by_split"] == expected["by_split"] and out["by_label"] == expected["by_label"]
    assert out["by_defect_type"] == {"mouse_bite": 1, "open_circuit": 2, "pin_hole": 2, "short_circuit": 1,
                                     "spur": 1, "spurious_copper": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert reasons == {
        "PCBData/group20000/20000/20000009.jpg": "listed in test.txt line 2 but group20000/20000/20000009_test.jpg not found",
        "PCBData/group20000/20000/20000001_test.jpg": "annotation group20000/20000_not/20000001.txt not found",
        "PCBData/group20000/20000/20000002_test.jpg":
            "annotation PCBData/group20000/20000_not/20000002.txt: line 1: unknown defect type code 7 (expected 1..6)",
    }
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("deeppcb", "PCBData/group10000/10000/10000001_test.jpg"))
        assert r.label == "defective" and r.split == "train" and r.source_split == "trainval"
        assert r.split_origin == "official" and r.domain == "bare_pcb" and r.orig_mode == "L"
        assert r.source_labels == ["short", "spur", "copper", "pin-hole"]
        assert r.defect_types == ["short_circuit", "spur", "spurious_copper", "pin_hole"]
        assert r.source_attributes["type_codes"] == [2, 4, 5, 6] and r.mask is None
        fixture = [(2, 1, 2, 10, 10), (4, 12, 12, 20, 22), (5, 40, 40, 50, 60), (6, 50, 2, 63, 9)]
        assert len(r.boxes) == len(fixture)
        for box, (code, x0, y0, x1, y1) in zip(r.boxes, fixture):
            assert box.label == CANON[code]
            assert (box.x0, box.y0) == pytest.approx(r.geometry.to_canvas(x0, y0))
            assert (box.x1, box.y1) == pytest.approx(r.geometry.to_canvas(x1, y1))
        t = catalog.get(make_key("deeppcb", "PCBData/group10000/10000/10000001_temp.jpg"))
        assert t.label == "normal" and t.source_labels == ["template"] and t.defect_types == [] and t.boxes == []
        assert t.split == "train" and t.source_split == "trainval"
        s = catalog.get(make_key("deeppcb", "PCBData/group10000/10000/10000002_test.jpg"))
        st = catalog.get(make_key("deeppcb", "PCBData/group10000/10000/10000002_temp.jpg"))
        assert s.split_origin == st.split_origin == "seeded" and s.source_split == st.source_split == ""
        assert s.split == st.split == expected["seeded"] and len(s.boxes) == 1
        # the template of a pair whose test image was quarantined is still a valid normal sample
        assert catalog.get(make_key("deeppcb", "PCBData/group20000/20000/20000001_temp.jpg")).split == "test"
        assert catalog.get(make_key("deeppcb", "PCBData/group20000/20000/20000001_test.jpg")) is None


def test_pcbdata_root_same_paths_and_templates_option(tmp_path, cli):
    write_deeppcb(tmp_path / "DeepPCB")
    first = cli("ingest", "deeppcb", "--root", str(tmp_path / "DeepPCB"), "--workers", "1")
    again = cli("ingest", "deeppcb", "--root", str(tmp_path / "DeepPCB/PCBData"), "--workers", "1")
    assert first["written"] == 10 and again["unchanged"] == 10 and again["records"] == 10
    full = [s.rel_path for s in DeepPCBAdapter(tmp_path / "DeepPCB").samples() if hasattr(s, "rel_path")]
    inner = [s.rel_path for s in DeepPCBAdapter(tmp_path / "DeepPCB/PCBData").samples() if hasattr(s, "rel_path")]
    assert full == inner and len(full) == 10
    no_templates = [s for s in DeepPCBAdapter(tmp_path / "DeepPCB", templates=False).samples()
                    if hasattr(s, "rel_path")]
    assert len(no_templates) == 4 and all(s.label == "defective" for s in no_templates)
    (tmp_path / "other").mkdir()
    with pytest.raises(RootError, match="PCBData"):
        list(DeepPCBAdapter(tmp_path / "other").samples())


@require("deeppcb")
def test_real_samples_every_annotation_line_is_a_box(cli, workspace):
    images = sorted(REALDATA.glob("PCBData/group*/*/*.jpg"))
    out = cli("ingest", "deeppcb", "--root", str(REALDATA), "--workers", "1")
    # every _test.jpg and every _temp.jpg is a record; all pairs are listed, so nothing is seeded
    assert out["records"] == len(images) and out["quarantined"] == 0
    tests = [p for p in images if p.name.endswith("_test.jpg")]
    assert out["by_label"] == {"defective": len(tests), "normal": len(images) - len(tests)}
    lists = {name: (REALDATA / "PCBData" / name).read_text().split() for name in ("trainval.txt", "test.txt")}
    with Workspace(workspace).catalog() as catalog:
        for image in tests:
            pid = image.name[: -len("_test.jpg")]
            record = catalog.get(make_key("deeppcb", image.relative_to(REALDATA).as_posix()))
            listed = [n for n, words in lists.items() if f"{image.parent.parent.name}/{image.parent.name}/{pid}.jpg" in words]
            assert record.source_split == listed[0][:-4] and record.split_origin == "official"
            ann = image.parent.parent / f"{image.parent.name}_not" / f"{pid}.txt"
            lines = [re.split(r"[,\s]+", line.strip()) for line in ann.read_text().splitlines() if line.strip()]
            assert len(record.boxes) == len(lines), ann
            for box, (x1, y1, x2, y2, code) in zip(record.boxes, lines):
                assert box.label == CANON[int(code)]
                cx0, cy0 = record.geometry.to_canvas(float(x1), float(y1))
                cx1, cy1 = record.geometry.to_canvas(float(x2), float(y2))
                assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((cx0, cy0, min(cx1, 512), min(cy1, 512)), abs=0.01)
            template = catalog.get(make_key("deeppcb", image.with_name(f"{pid}_temp.jpg").relative_to(REALDATA).as_posix()))
            assert template.label == "normal" and template.split == record.split
