"""Real-IAD: per-category JSON (train/test lists, anomaly_class OK or a defect code, image/mask
paths relative to the category folder), several resolution folders, views C1..C5, missing files."""

import json

import pytest

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.realiad import RealIADAdapter
from imdd_build.workspace import Workspace


def write_realiad(root, resolutions=(("256", 32), ("1024", 64))):
    def ok(sid, view):
        return f"OK/S{sid:04d}/audiojack_{sid:04d}_OK_C{view}_20230922090706.jpg"

    def ng(code, sid, view):
        return f"NG/{code}/S{sid:04d}/audiojack_{sid:04d}_NG_{code}_C{view}_20230922091000"

    train = [{"category": "audiojack", "anomaly_class": "OK", "image_path": ok(1, v), "mask_path": None}
             for v in (1, 2)]
    test = [{"category": "audiojack", "anomaly_class": "OK", "image_path": ok(2, 1), "mask_path": None},
            {"category": "audiojack", "anomaly_class": "HS", "image_path": ng("HS", 55, 3) + ".jpg",
             "mask_path": ng("HS", 55, 3) + ".png"},
            {"category": "audiojack", "anomaly_class": "QS", "image_path": ng("QS", 56, 5) + ".jpg",
             "mask_path": ng("QS", 56, 5) + ".png"},
            {"category": "audiojack", "anomaly_class": "OK", "image_path": ok(3, 1)},   # listed, missing
            {"category": "audiojack", "anomaly_class": "ZW", "image_path": ng("ZW", 57, 1) + ".jpg",
             "mask_path": ng("ZW", 57, 1) + ".png"}]                                  # mask missing
    for res, side in resolutions:
        cat = root / f"realiad_{res}" / "audiojack"
        for i, item in enumerate(train + test[:3] + test[4:]):
            save(noise_image((side, side), seed=i), cat / item["image_path"], "JPEG")
        for item in test[1:3]:
            save(blob_mask((side, side), (side // 4, side // 4, side // 2, side // 2)), cat / item["mask_path"])
    # a second category whose images are absent at every resolution
    jsons = root / "realiad_jsons" / "realiad_jsons"
    jsons.mkdir(parents=True)
    (jsons / "audiojack.json").write_text(json.dumps({"meta": {"prefix": "", "normal_class": "OK"},
                                                      "train": train, "test": test}))
    (jsons / "woodstick.json").write_text(json.dumps({"meta": {}, "train": train[:1], "test": []}))
    sv = root / "realiad_jsons" / "realiad_jsons_sv"
    sv.mkdir(parents=True)
    (sv / "audiojack.json").write_text(json.dumps({"meta": {}, "train": train[:1], "test": test[1:2]}))
    return root


def test_resolution_default_is_largest_and_option_picks_one(tmp_path):
    write_realiad(tmp_path / "Real-IAD")
    a = RealIADAdapter(tmp_path / "Real-IAD")
    assert a.resolution == "1024" and a.base.name == "realiad_1024"
    b = RealIADAdapter(tmp_path / "Real-IAD", resolution=256)
    assert b.resolution == "256"
    with pytest.raises(RootError, match="resolution '512' not found; present: 1024, 256"):
        RealIADAdapter(tmp_path / "Real-IAD", resolution="512")
    with pytest.raises(RootError, match="no realiad_jsons"):
        RealIADAdapter(tmp_path / "Real-IAD" / "realiad_1024")


def test_ingest_realiad(tmp_path, cli, workspace):
    write_realiad(tmp_path / "Real-IAD")
    out = cli("ingest", "realiad", "--root", str(tmp_path / "Real-IAD"), "--workers", "1")
    assert out["records"] == 5
    assert out["by_split"] == {"test": 3, "train": 2}
    assert out["by_label"] == {"defective": 2, "normal": 3}
    assert out["by_defect_type"] == {"missing_part": 1, "scratch": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert reasons["audiojack/OK/S0003/audiojack_0003_OK_C1_20230922090706.jpg"] == \
        "listed in realiad_jsons/realiad_jsons/audiojack.json test[3] but not found"
    assert reasons["audiojack/NG/ZW/S0057/audiojack_0057_NG_ZW_C1_20230922091000.png"] == \
        "mask listed in realiad_jsons/realiad_jsons/audiojack.json test[4] but not found"
    assert "category folder missing at resolution 1024" in reasons["realiad_1024/woodstick"]
    ws = Workspace(workspace)
    rel = "audiojack/NG/HS/S0055/audiojack_0055_NG_HS_C3_20230922091000.jpg"
    with ws.catalog() as catalog:
        r = catalog.get(make_key("realiad", rel))
        assert r.source_labels == ["HS"] and r.defect_types == ["scratch"] and r.domain == "connector"
        assert r.source_attributes == {"resolution": "1024", "view": "C3", "sample": "S0055"}
        assert r.orig_width == 64 and r.attributes.regions == 1 and r.split == "test"
        x0, y0 = r.geometry.to_canvas(16, 16)
        assert abs(r.boxes[0].x0 - x0) <= 2 * r.geometry.scale_x and abs(r.boxes[0].y0 - y0) <= 2 * r.geometry.scale_y
        n = catalog.get(make_key("realiad", "audiojack/OK/S0001/audiojack_0001_OK_C2_20230922090706.jpg"))
        assert n.label == "normal" and n.source_labels == ["OK"] and n.source_attributes["view"] == "C2"
    # the same photos at another resolution keep their keys (records are rewritten, not added)
    low = cli("ingest", "realiad", "--root", str(tmp_path / "Real-IAD"), "--opt", "resolution=256",
              "--category", "audiojack", "--workers", "1")
    assert low["records"] == 5 and low["written"] == 5
    with ws.catalog() as catalog:
        r = catalog.get(make_key("realiad", rel))
        assert r.orig_width == 32 and r.source_attributes["resolution"] == "256"


def test_single_view_json_variant(tmp_path, cli):
    write_realiad(tmp_path / "Real-IAD", resolutions=(("512", 32),))
    out = cli("ingest", "realiad", "--root", str(tmp_path / "Real-IAD"), "--opt", "json=realiad_jsons_sv",
              "--workers", "1")
    assert out["records"] == 2 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 1, "train": 1}
