"""TILDA: c?r?/e?/*.tif texture/error-class folders; e0 is normal."""

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.tilda import TildaAdapter
from imdd_build.workspace import Workspace

SIZE = (48, 32)  # 768x512 aspect


def write_tilda(root):
    for t, tex in enumerate(("c1r1", "C2R2")):
        for e, err in enumerate(("e0", "e1", "E3")):
            for k in range(2):
                ext = ".TIF" if k else ".tif"
                save(noise_image(SIZE, "L", seed=100 * t + 10 * e + k), root / tex / err / f"{k:03d}{ext}")
    save(noise_image(SIZE, "L", seed=5), root / "c4r3" / "c4r3e6n01.tiff")  # flat: error class in the name
    save(noise_image(SIZE, "L", seed=6), root / "c4r3" / "e7" / "001.tif")  # no such error class
    save(noise_image(SIZE, "L", seed=7), root / "c4r3" / "notes.tif")  # flat file without error class
    (root / "c1r1" / "e0" / "Thumbs.db").write_bytes(b"\x00")
    (root / "c1r1" / "e0" / "._000.tif").write_bytes(b"\x00\x05\x16\x07")
    save(noise_image(SIZE, "L", seed=8), root.parent / "__MACOSX" / "c1r1" / "e0" / "000.tif")


def test_tilda(tmp_path, cli, workspace):
    root = tmp_path / "tilda" / "TILDA"
    write_tilda(root)
    out = cli("ingest", "tilda", "--root", str(tmp_path / "tilda"), "--workers", "1")
    assert out["records"] == 13
    assert out["by_label"] == {"defective": 9, "normal": 4}
    assert sum(out["by_split"].values()) == 13
    assert out["by_defect_type"] == {"color_defect": 1, "hole": 4, "thread_defect": 4}
    quarantine = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(quarantine) == {"c4r3/e7/001.tif", "c4r3/notes.tif"}
    assert "folder 'e7' names no TILDA error class" in quarantine["c4r3/e7/001.tif"]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("tilda", "c1r1/e0/001.TIF"))
        assert r.label == "normal" and r.source_labels == ["e0"] and r.defect_types == []
        assert r.product == "c1r1" and r.domain == "textile_texture" and r.split_origin == "seeded"
        assert r.orig_format == "TIFF" and r.orig_mode == "L"
        r = catalog.get(make_key("tilda", "C2R2/E3/000.tif"))
        assert r.label == "defective" and r.source_labels == ["e3"] and r.defect_types == ["thread_defect"]
        assert r.product == "c2r2"
        r = catalog.get(make_key("tilda", "c4r3/c4r3e6n01.tiff"))
        assert r.source_labels == ["e6"] and r.defect_types == ["color_defect"]


def test_tilda_category_filter(tmp_path):
    write_tilda(tmp_path / "t")
    samples = list(TildaAdapter(tmp_path / "t", categories=["c2r2"]).samples())
    assert len(samples) == 6 and {s.product for s in samples} == {"c2r2"}
