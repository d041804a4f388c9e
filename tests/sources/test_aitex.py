import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.sources.aitex import AITEXAdapter
from imdd_build.sourcekit.base import RootError
from imdd_build.workspace import Workspace

SIZE = (128, 8)  # tiny stand-in for the 4096x256 strips (same 16:1 aspect)


def _mask(x0, x1, y0=2, y1=6):
    m = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    m[y0:y1, x0:x1] = 255
    return Image.fromarray(m, "L")


def write_aitex(root):
    data = root / "AITEX"  # extra archive level tolerated
    defects = data / "Defect_images"
    masks = data / "Mask_images"
    for i, stem in enumerate(["0001_002_00", "0002_019_01", "0003_023_02", "0004_030_03"]):
        save(noise_image(SIZE, "L", seed=i), defects / f"{stem}.png")
    save(_mask(10, 30), masks / "0001_002_00_mask.png")
    save(_mask(10, 20), masks / "0002_019_01_mask1.png")  # two mask files: OR-ed
    save(_mask(80, 100), masks / "0002_019_01_mask2.png")
    save(_mask(50, 70), masks / "0004_030_03_MASK.png")  # odd case
    # 0003 has no mask at all: kept, defective, no mask
    save(_mask(1, 5), masks / "0099_002_00_mask.png")  # matches no image
    save(noise_image(SIZE, "L", seed=9), defects / "0005-027-04.png")  # not nnnn_ddd_ff
    (defects / "Thumbs.db").write_bytes(b"x")
    (defects / "._0001_002_00.png").write_bytes(b"\x00\x05\x16\x07")
    normals = data / "NODefect_images"
    save(noise_image(SIZE, "L", seed=20), normals / "2306881-210020u/0010_000_00.png")
    save(noise_image(SIZE, "L", seed=21), normals / "2306881-210020u/0011_000_00.png")
    save(noise_image(SIZE, "L", seed=22), normals / "2311517-195063u/0012_000_01.png")
    save(noise_image(SIZE, "L", seed=23), normals / "0013_000_05.png")


def test_ingest_codes_masks_and_normals(tmp_path, cli, workspace):
    write_aitex(tmp_path / "aitex")
    out = cli("ingest", "aitex", "--root", str(tmp_path / "aitex"), "--workers", "1", "--resize-mode", "letterbox")
    assert out["records"] == 8
    assert out["by_label"] == {"defective": 4, "normal": 4}
    assert sum(out["by_split"].values()) == 8
    assert out["by_defect_type"] == {"broken_yarn": 1, "fold": 1, "fuzzball": 1, "knot": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert reasons == {"Defect_images/0005-027-04.png":
                       "file name does not follow nnnn_ddd_ff (number, defect code, fabric)",
                       "Mask_images/0099_002_00_mask.png": "mask file matches no image in Defect_images/"}
    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        two = catalog.get(make_key("aitex", "Defect_images/0002_019_01.png"))
        assert two.source_labels == ["019"] and two.defect_types == ["fuzzball"] and two.product == "fabric_01"
        assert two.mask_source_path == "Mask_images/0002_019_01_mask1.png;Mask_images/0002_019_01_mask2.png"
        assert two.attributes.regions == 2 and len(two.boxes) == 2
        back = mask_to_original(np.asarray(Image.open(ws.store().path(two.mask))), two.geometry, *SIZE) > 0
        assert back[3, 15] and back[3, 90] and not back[3, 50]
        assert two.source_attributes == {"image_number": "0002", "defect_code": "019", "fabric_code": "01",
                                         "defect_name": "Fuzzyball"}
        assert two.split_origin == "seeded" and two.source_split == "" and two.domain == "woven_fabric"
        nomask = catalog.get(make_key("aitex", "Defect_images/0003_023_02.png"))
        assert nomask.label == "defective" and nomask.mask is None and nomask.defect_types == ["fold"]
        assert nomask.source_attributes["mask_missing"] is True
        assert catalog.get(make_key("aitex", "Defect_images/0004_030_03.png")).mask is not None
        normal = catalog.get(make_key("aitex", "NODefect_images/2311517-195063u/0012_000_01.png"))
        assert normal.label == "normal" and normal.source_labels == ["000"] and normal.defect_types == []
        assert catalog.get(make_key("aitex", "NODefect_images/0013_000_05.png")).product == "fabric_05"


def test_category_filter_and_wrong_root(tmp_path, cli):
    write_aitex(tmp_path / "aitex")
    out = cli("ingest", "aitex", "--root", str(tmp_path / "aitex/AITEX"), "--workers", "1",
              "--resize-mode", "letterbox", "--category", "fabric_00")
    assert out["records"] == 3 and out["by_label"] == {"defective": 1, "normal": 2}
    with pytest.raises(RootError, match="no Defect_images"):
        AITEXAdapter(tmp_path / "aitex/AITEX/Mask_images")
