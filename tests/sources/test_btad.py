"""BTAD: ok/ko folders, masks with the image's stem (no `_mask`), .bmp/.png per product, 0/1 and
anti-aliased masks, a wrapping archive folder, a missing mask and stray files."""

import numpy as np
from PIL import Image

from fixtures import blob_mask, noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.btad import BTADAdapter
from imdd_build.workspace import Workspace

SIZE = (64, 48)


def write_btad(top):
    root = top / "BTech_Dataset_transformed"  # the archive's own folder, wrapped by `top`
    # 01: .bmp images, .png masks with 0/255
    for i in range(2):
        save(noise_image(SIZE, seed=i), root / f"01/train/ok/{i:04d}.bmp")
    save(noise_image(SIZE, seed=5), root / "01/test/ok/0000.bmp")
    save(noise_image(SIZE, seed=6), root / "01/test/ko/0000.bmp")
    save(blob_mask(SIZE, (10, 10, 30, 30)), root / "01/ground_truth/ko/0000.png")
    save(noise_image(SIZE, seed=7), root / "01/test/ko/0001.bmp")  # its mask is missing
    # 02: .png images, 0/1 masks
    save(noise_image(SIZE, seed=10), root / "02/train/ok/0000.png")
    save(noise_image(SIZE, seed=11), root / "02/test/ko/0000.png")
    save(blob_mask(SIZE, (20, 5, 50, 25), value=1), root / "02/ground_truth/ko/0000.png")
    # 03: upper-case .BMP images, anti-aliased .bmp masks (0..255 with soft edge)
    save(noise_image(SIZE, seed=20), root / "03/train/ok/0000.BMP", "BMP")
    save(noise_image(SIZE, seed=21), root / "03/test/ko/0000.BMP", "BMP")
    soft = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    soft[10:20, 10:40] = 255
    soft[9, 10:40] = 100  # anti-aliased fringe below half: not defect
    soft[20, 10:40] = 200  # above half: defect
    save(Image.fromarray(soft, "L"), root / "03/ground_truth/ko/0000.bmp", "BMP")
    (root / "03/test/ko/Thumbs.db").write_bytes(b"\x00")
    (root / "03/test/ko/._0000.BMP").write_bytes(b"\x00\x05")
    (root / "readme.txt").write_text("BTAD\n")
    return root


def test_adapter_pairs_masks_by_stem_whatever_the_extension(tmp_path):
    root = write_btad(tmp_path / "btad")
    adapter = BTADAdapter(tmp_path / "btad")  # the folder above BTech_Dataset_transformed
    assert adapter.base == root
    samples = {s.rel_path: s for s in adapter.samples()}
    assert len(samples) == 9 and "03/test/ko/._0000.BMP" not in samples
    assert samples["01/test/ko/0000.bmp"].mask.paths == ["01/ground_truth/ko/0000.png"]
    assert samples["03/test/ko/0000.BMP"].mask.paths == ["03/ground_truth/ko/0000.bmp"]
    missing = samples["01/test/ko/0001.bmp"]
    assert missing.mask is None and missing.attributes == {"mask": "missing"} and missing.label == "defective"
    ok = samples["01/test/ok/0000.bmp"]
    assert ok.label == "normal" and ok.source_labels == ["ok"] and ok.product == "product_01"


def test_ingest_counts_masks_and_single_product_root(tmp_path, cli, workspace):
    root = write_btad(tmp_path / "btad")
    out = cli("ingest", "btad", "--root", str(tmp_path / "btad"), "--workers", "1")
    assert out["records"] == 9 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 5, "train": 4}
    assert out["by_label"] == {"defective": 4, "normal": 5}
    assert out["by_defect_type"] == {"anomaly": 4}
    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        r01 = catalog.get(make_key("btad", "01/test/ko/0000.bmp"))
        assert r01.source_labels == ["ko"] and r01.defect_types == ["anomaly"] and r01.split == "test"
        assert r01.attributes.basis == "mask" and r01.attributes.regions == 1
        x0, y0 = r01.geometry.to_canvas(10, 10)
        x1, y1 = r01.geometry.to_canvas(30, 30)
        box = r01.boxes[0]
        assert box.label == "anomaly"
        assert max(abs(box.x0 - x0), abs(box.y0 - y0), abs(box.x1 - x1), abs(box.y1 - y1)) <= 2 * r01.geometry.scale_x
        # the 0/1 mask was not lost
        r02 = catalog.get(make_key("btad", "02/test/ko/0000.png"))
        assert r02.attributes.area_fraction > 0 and len(r02.boxes) == 1
        # the anti-aliased mask: rows 10..20 are defect (11 rows), the faint row 9 is not
        r03 = catalog.get(make_key("btad", "03/test/ko/0000.BMP"))
        mask = np.asarray(Image.open(ws.store().path(r03.mask))) > 0
        ys = np.nonzero(mask.any(axis=1))[0]
        assert abs((ys.max() - ys.min() + 1) / r03.geometry.scale_y - 11) <= 1
        missing = catalog.get(make_key("btad", "01/test/ko/0001.bmp"))
        assert missing.mask is None and missing.source_attributes == {"mask": "missing"}
    # pointing at one product folder gives the same keys
    one = cli("ingest", "btad", "--root", str(root / "02"), "--workers", "1")
    assert one["seen"] == 2 and one["unchanged"] == 2 and one["records"] == 9


def test_category_filter_takes_folder_or_product_name(tmp_path):
    write_btad(tmp_path / "btad")
    a = BTADAdapter(tmp_path / "btad", categories=["02"])
    b = BTADAdapter(tmp_path / "btad", categories=["product_03"])
    assert {s.product for s in a.samples()} == {"product_02"}
    assert {s.product for s in b.samples()} == {"product_03"}
