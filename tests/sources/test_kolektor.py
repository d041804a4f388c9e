"""KolektorSDD (`ksdd`) and KolektorSDD2 (`ksdd2`)."""

import numpy as np
import pytest
from PIL import Image

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sources.ksdd import KolektorSDDAdapter
from imdd_build.sources.ksdd2 import KolektorSDD2Adapter
from imdd_build.workspace import Workspace

SIZE = (24, 60)  # tiny stand-in for 500x~1250


def _zero(size=SIZE):
    return Image.new("L", size, 0)


def write_ksdd(root):
    """root/KolektorSDD/kosNN/PartN.jpg + PartN_label.bmp, with every quirk."""
    data = root / "KolektorSDD"
    for n, item in enumerate(("kos01", "kos02", "kos03", "kos21")):
        for part in range(3):
            save(noise_image(SIZE, "L", seed=10 * n + part), data / item / f"Part{part}.jpg")
            save(_zero(), data / item / f"Part{part}_label.bmp", "BMP")
    save(blob_mask(SIZE, (4, 10, 20, 40)), data / "kos01/Part1_label.bmp", "BMP")  # 0/255 defect
    odd = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    odd[30:40, 5:15] = 7  # a non-255 value: still defect (> 0)
    save(Image.fromarray(odd, "L"), data / "kos02/Part0_label.bmp", "BMP")
    # kos21/Part7: the authors' loader skips it; we keep it (it is fine here)
    save(noise_image(SIZE, "L", seed=77), data / "kos21/Part7.jpg")
    save(_zero(), data / "kos21/Part7_label.bmp", "BMP")
    # upper-case extension
    (data / "kos02/Part2.jpg").rename(data / "kos02/Part2.JPG")
    # image without a mask, and an unreadable mask
    (data / "kos03/Part2_label.bmp").unlink()
    (data / "kos03/Part1_label.bmp").write_bytes(b"BM" + b"\x00" * 10)
    # stray files and a stray nested copy of the tree
    (data / "kos01/._Part0.jpg").write_bytes(b"\x00\x05\x16\x07")
    (data / "kos01/Thumbs.db").write_bytes(b"x")
    save(noise_image(SIZE, "L", seed=5), data / "KolektorSDD/kos01/Part0.jpg")
    save(_zero(), data / "KolektorSDD/kos01/Part0_label.bmp", "BMP")


def test_ksdd_labels_from_masks_grouped_split_and_quirks(tmp_path, cli, workspace):
    write_ksdd(tmp_path / "ksdd")
    out = cli("ingest", "ksdd", "--root", str(tmp_path / "ksdd"), "--workers", "1")
    assert out["records"] == 11  # 4 items x 3 parts + kos21/Part7 - 2 quarantined
    assert out["by_label"] == {"defective": 2, "normal": 9}
    assert sum(out["by_split"].values()) == 11
    assert out["by_defect_type"] == {"anomaly": 2}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == {"kos03/Part2.jpg", "kos03/Part1.jpg"}
    assert "no mask Part2_label.bmp" in reasons["kos03/Part2.jpg"]
    assert "mask kos03/Part1_label.bmp is unreadable" in reasons["kos03/Part1.jpg"]

    with Workspace(workspace).catalog() as catalog:
        d1 = catalog.get(make_key("ksdd", "kos01/Part1.jpg"))
        d2 = catalog.get(make_key("ksdd", "kos02/Part0.jpg"))
        n = catalog.get(make_key("ksdd", "kos01/Part0.jpg"))
        assert d1.label == "defective" and d1.mask is not None and d1.defect_types == ["anomaly"]
        assert d1.mask_source_path == "kos01/Part1_label.bmp" and d1.source_labels == []
        assert d1.boxes and d1.attributes.area_fraction > 0.1
        assert d2.label == "defective" and d2.attributes.regions == 1  # value 7 counted as defect
        assert n.label == "normal" and n.mask is None and n.split_origin == "seeded" and n.source_split == ""
        assert catalog.get(make_key("ksdd", "kos21/Part7.jpg")).label == "normal"
        assert catalog.get(make_key("ksdd", "kos02/Part2.JPG")) is not None
        assert catalog.get(make_key("ksdd", "KolektorSDD/kos01/Part0.jpg")) is None  # stray copy ignored
        # the parts of one commutator never straddle splits
        for item in ("kos01", "kos02", "kos21"):
            splits = {catalog.get(make_key("ksdd", f"{item}/Part{p}.jpg")).split for p in (0, 1)}
            assert len(splits) == 1


def test_ksdd_keys_do_not_depend_on_the_folder_pointed_at(tmp_path):
    write_ksdd(tmp_path / "ksdd")
    outer = {s.rel_path for s in KolektorSDDAdapter(tmp_path / "ksdd").samples() if hasattr(s, "rel_path")}
    inner = {s.rel_path for s in KolektorSDDAdapter(tmp_path / "ksdd/KolektorSDD").samples()
             if hasattr(s, "rel_path")}
    assert outer == inner and "kos21/Part7.jpg" in outer
    with pytest.raises(RootError, match="no kosNN folders"):
        KolektorSDDAdapter(tmp_path / "ksdd/KolektorSDD/kos01")


def write_ksdd2(root):
    data = root / "KolektorSDD2"  # extra level tolerated
    size = (23, 63)
    for split, first in (("train", 10000), ("test", 20000)):
        for i in range(3):
            stem = str(first + i)
            save(noise_image(size, seed=first + i), data / split / f"{stem}.png")
            save(_zero(size), data / split / f"{stem}_GT.png")
    save(blob_mask(size, (2, 5, 20, 30)), data / "train/10001_GT.png")
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[40:50, 3:9, 1] = 255  # a colour mask: max over channels
    save(Image.fromarray(rgb, "RGB"), data / "test/20002_GT.png")
    save(noise_image(size, seed=1), data / "train/10003.png")  # no _GT file
    (data / "test/.DS_Store").write_bytes(b"x")


def test_ksdd2_official_split_and_defect_iff_mask_nonzero(tmp_path, cli, workspace):
    write_ksdd2(tmp_path / "ksdd2")
    out = cli("ingest", "ksdd2", "--root", str(tmp_path / "ksdd2"), "--workers", "1", "--resize-mode", "letterbox")
    assert out["records"] == 6
    assert out["by_split"] == {"test": 3, "train": 3}
    assert out["by_label"] == {"defective": 2, "normal": 4}
    assert out["by_defect_type"] == {"anomaly": 2}
    assert [(q["path"], q["reason"]) for q in out["quarantine"]] == [("train/10003.png", "no mask 10003_GT.png next to the image")]
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("ksdd2", "train/10001.png"))
        assert r.label == "defective" and r.source_split == "train" and r.split_origin == "official"
        assert r.mask_source_path == "train/10001_GT.png" and r.boxes and r.source_labels == []
        c = catalog.get(make_key("ksdd2", "test/20002.png"))
        assert c.label == "defective" and c.split == "test" and c.attributes.regions == 1
        n = catalog.get(make_key("ksdd2", "test/20000.png"))
        assert n.label == "normal" and n.mask is None and not n.boxes
    inner = {s.rel_path for s in KolektorSDD2Adapter(tmp_path / "ksdd2/KolektorSDD2").samples()
             if hasattr(s, "rel_path")}
    assert "train/10001.png" in inner
