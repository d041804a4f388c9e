"""Eyecandies: Pipelime underfolders, only image_5 (or image_0), test_private skipped, typed masks
decide the defect types, metadata.yaml label key tolerant, 16-bit depth never an image."""

import numpy as np
from PIL import Image

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.eyecandies import EyecandiesAdapter
from imdd_build.workspace import Workspace

SIZE = (48, 48)
EMPTY = Image.fromarray(np.zeros((48, 48), np.uint8), "L")


def sample(data, sid, seed, metadata=None, masks=None):
    for k in range(6):
        save(noise_image(SIZE, seed=seed * 10 + k), data / f"{sid}_image_{k}.png")
    save(Image.fromarray(np.full((48, 48), 40000, np.uint16)), data / f"{sid}_depth.png")
    save(noise_image(SIZE, seed=seed), data / f"{sid}_normals.png")
    (data / f"{sid}_pose.txt").write_text("1 0 0 0\n")
    if metadata is not None:
        (data / f"{sid}_metadata.yaml").write_text(metadata)
    for name, im in (masks or {}).items():
        save(im, data / f"{sid}_{name}.png")


def write_eyecandies(root):
    cls = root / "CandyCane"
    sample(cls / "train/data", "000", 1, "anomalous: 0\n")
    sample(cls / "train/data", "001", 2)  # no metadata: train is normal
    sample(cls / "val/data", "000", 3, "anomalous: 0\n")
    data = cls / "test_public/data"
    sample(data, "000", 4, "anomalous: 0\n")
    bumps = blob_mask(SIZE, (5, 5, 20, 20))
    colors = blob_mask(SIZE, (25, 25, 45, 45))
    union = Image.fromarray(np.maximum(np.asarray(bumps), np.asarray(colors)), "L")
    sample(data, "001", 5, "anomalous: 1\n", {"mask": union, "bumps_mask": bumps, "dents_mask": EMPTY,
                                              "colors_mask": colors, "normals_mask": EMPTY})
    dents = blob_mask(SIZE, (10, 30, 30, 45))
    sample(data, "002", 6, "Anomalous: true\n", {"dents_mask": dents, "bumps_mask": EMPTY})  # no union mask
    sample(data, "003", 7, "something: else\n")  # unreadable label: quarantined
    sample(cls / "test_private/data", "000", 8)  # skipped
    (cls / "test_public/data/004_image_0.png").write_bytes(b"")  # a sample without image_5
    # a second class, snake_case folder name, nested copy of itself
    sample(root / "gummy_bear/gummy_bear/train/data", "0000", 9, "anomalous: 0\n")
    return root


def test_adapter_picks_one_lighting_and_typed_labels(tmp_path):
    write_eyecandies(tmp_path / "eyecandies")
    items = list(EyecandiesAdapter(tmp_path / "eyecandies").samples())
    samples = {s.rel_path: s for s in items if hasattr(s, "rel_path")}
    assert all(p.endswith("_image_5.png") for p in samples) and len(samples) == 7
    assert not any("test_private" in p for p in samples)
    s1 = samples["CandyCane/test_public/data/001_image_5.png"]
    assert s1.source_labels == ["bumps", "colors"] and s1.mask.paths == ["CandyCane/test_public/data/001_mask.png"]
    s2 = samples["CandyCane/test_public/data/002_image_5.png"]
    assert s2.source_labels == ["dents"] and s2.mask.paths == ["CandyCane/test_public/data/002_dents_mask.png"]
    assert samples["gummy_bear/gummy_bear/train/data/0000_image_5.png"].product == "gummy_bear"
    zero = {s.rel_path for s in EyecandiesAdapter(tmp_path / "eyecandies", image="image_0").samples()
            if hasattr(s, "rel_path")}
    assert "CandyCane/val/data/000_image_0.png" in zero and len(zero) == 7  # 004 has an image_0 but no label


def test_ingest_eyecandies(tmp_path, cli, workspace):
    write_eyecandies(tmp_path / "eyecandies")
    out = cli("ingest", "eyecandies", "--root", str(tmp_path / "eyecandies"), "--workers", "1")
    assert out["records"] == 7
    assert out["by_split"] == {"test": 3, "train": 3, "validation": 1}
    assert out["by_label"] == {"defective": 2, "normal": 5}
    assert out["by_defect_type"] == {"bump": 1, "color_defect": 1, "dent": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert reasons == {
        "CandyCane/test_public/data/003_image_5.png": "no readable anomalous flag in metadata.yaml",
        "CandyCane/test_public/data/004_image_5.png": "sample 004 has no image_5 file",
    }
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("eyecandies", "CandyCane/test_public/data/001_image_5.png"))
        assert r.defect_types == ["bump", "color_defect"] and r.source_labels == ["bumps", "colors"]
        assert r.domain == "confectionery" and r.product == "candy_cane" and r.attributes.regions == 2
        assert r.source_attributes == {"sample_id": "001", "lighting": "image_5"}
        d = catalog.get(make_key("eyecandies", "CandyCane/test_public/data/002_image_5.png"))
        assert d.defect_types == ["dent"] and len(d.boxes) == 1
        x0, y0 = d.geometry.to_canvas(10, 30)
        assert abs(d.boxes[0].x0 - x0) <= 2 * d.geometry.scale_x and abs(d.boxes[0].y0 - y0) <= 2 * d.geometry.scale_y
        v = catalog.get(make_key("eyecandies", "CandyCane/val/data/000_image_5.png"))
        assert v.split == "validation" and v.label == "normal" and v.source_labels == ["good"]
