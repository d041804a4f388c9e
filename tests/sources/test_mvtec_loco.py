"""MVTec LOCO AD: a mask FOLDER per anomalous image with several PNGs whose gray values differ
(union), the validation split, optional defects_config.json naming the sub-types."""

import json

import numpy as np
from PIL import Image

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.mvtec_loco import MVTecLOCOAdapter
from imdd_build.workspace import Workspace

SIZE = (64, 48)
CONFIG = [
    {"defect_name": "missing_almonds", "pixel_value": 255, "saturation_threshold": 1.0, "relative_saturation": True},
    {"defect_name": "box_damaged", "pixel_value": 242, "saturation_threshold": 5000, "relative_saturation": False},
    {"defect_name": "too_many_oranges", "pixel_value": 241, "saturation_threshold": 1.0, "relative_saturation": True},
]


def region(box, value):
    a = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = value
    return Image.fromarray(a, "L")


def write_loco(root, with_config=True):
    cat = root / "breakfast_box"
    for i in range(2):
        save(noise_image(SIZE, seed=i), cat / f"train/good/{i:03d}.png")
    save(noise_image(SIZE, seed=5), cat / "validation/good/000.png")
    save(noise_image(SIZE, seed=6), cat / "test/good/000.png")
    save(noise_image(SIZE, seed=7), cat / "test/logical_anomalies/000.png")
    save(region((2, 2, 12, 12), 255), cat / "ground_truth/logical_anomalies/000/000.png")
    save(region((40, 30, 60, 45), 241), cat / "ground_truth/logical_anomalies/000/001.png")
    save(noise_image(SIZE, seed=8), cat / "test/structural_anomalies/000.png")
    save(region((20, 10, 30, 40), 242), cat / "ground_truth/structural_anomalies/000/000.png")
    save(noise_image(SIZE, seed=9), cat / "test/structural_anomalies/001.png")  # no mask folder
    (cat / "ground_truth/logical_anomalies/000/.DS_Store").write_bytes(b"\x00")
    if with_config:
        (cat / "defects_config.json").write_text(json.dumps(CONFIG))
    (cat / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    return root


def test_adapter_unions_mask_folders_and_names_subtypes(tmp_path):
    write_loco(tmp_path / "loco")
    samples = {s.rel_path: s for s in MVTecLOCOAdapter(tmp_path / "loco").samples()}
    assert len(samples) == 7
    logical = samples["breakfast_box/test/logical_anomalies/000.png"]
    assert logical.mask.paths == ["breakfast_box/ground_truth/logical_anomalies/000/000.png",
                                  "breakfast_box/ground_truth/logical_anomalies/000/001.png"]
    assert logical.attributes == {"defects": ["too_many_oranges", "missing_almonds"], "pixel_values": [241, 255]}
    assert samples["breakfast_box/test/structural_anomalies/000.png"].attributes["defects"] == ["box_damaged"]
    assert samples["breakfast_box/test/structural_anomalies/001.png"].attributes == {"mask": "missing"}
    off = {s.rel_path: s for s in MVTecLOCOAdapter(tmp_path / "loco", subtypes="false").samples()}
    assert off["breakfast_box/test/logical_anomalies/000.png"].attributes == {}


def test_ingest_loco_with_config(tmp_path, cli, workspace):
    write_loco(tmp_path / "loco")
    out = cli("ingest", "mvtec_loco", "--root", str(tmp_path / "loco"), "--workers", "1")
    assert out["records"] == 7 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 4, "train": 2, "validation": 1}
    assert out["by_label"] == {"defective": 3, "normal": 4}
    # the sub-types that the mask files' gray values name join the kind (class_mask indexes them)
    assert out["by_defect_type"] == {"box_damaged": 1, "logical_anomaly": 1, "missing_almonds": 1,
                                     "structural_anomaly": 2, "too_many_oranges": 1}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("mvtec_loco", "breakfast_box/test/logical_anomalies/000.png"))
        assert r.source_labels == ["logical_anomalies"]
        assert r.defect_types == ["logical_anomaly", "missing_almonds", "too_many_oranges"]
        assert r.attributes.instances == {"missing_almonds": 1, "too_many_oranges": 1}
        assert r.source_attributes["defects"] == ["too_many_oranges", "missing_almonds"]
        assert r.domain == "packaging" and r.attributes.regions == 2 and len(r.boxes) == 2  # both files, gray 241 and 255
        v = catalog.get(make_key("mvtec_loco", "breakfast_box/validation/good/000.png"))
        assert v.split == "validation" and v.source_split == "validation" and v.label == "normal"


def test_ingest_loco_without_config_falls_back_to_kinds(tmp_path, cli, workspace):
    write_loco(tmp_path / "loco", with_config=False)
    out = cli("ingest", "mvtec_loco", "--root", str(tmp_path / "loco" / "breakfast_box"), "--workers", "1")
    assert out["records"] == 7 and out["by_defect_type"] == {"logical_anomaly": 1, "structural_anomaly": 2}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("mvtec_loco", "breakfast_box/test/structural_anomalies/000.png"))
        assert r.source_attributes == {} and r.attributes.regions == 1
