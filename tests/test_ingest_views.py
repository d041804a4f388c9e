"""What crop and tile make of a sample (issue 17 item 1, issue 15 item 2): no stored record claims a
defect its pixels do not contain; crop moves to keep the defect or letterboxes; tiles have their own
labels and geometry, and `mask_to_original` of all tiles reassembles the original mask and boxes."""

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.geometry import mask_to_original, tile_geometries, transform_box
from imdd_build.normalize import mask_to_canvas
from imdd_build.record import make_key
from imdd_build.workspace import Workspace

GENERIC = ("--license", "CC-BY-4.0", "--domain", "steel_strip", "--source-id", "line", "--workers", "1")


def region_mask(size, *boxes):
    w, h = size
    m = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = 255
    return m


def write_sample(root, name, size, *boxes, cls="dent"):
    save(noise_image(size, seed=len(name)), root / cls / f"{name}.png")
    if boxes:
        save(Image.fromarray(region_mask(size, *boxes), "L"), root / cls / f"{name}_mask.png")


def records(workspace):
    with Workspace(workspace).catalog() as catalog:
        return {r.key: r for r in catalog.iter_records()}


def pixels(workspace, ref):
    return np.asarray(Image.open(Workspace(workspace).store().path(ref)))


def test_crop_moves_to_keep_the_defect_or_letterboxes(tmp_path, cli, workspace):
    root = tmp_path / "f"
    write_sample(root, "centred", (400, 200), (190, 90, 210, 110))
    write_sample(root, "left", (400, 200), (5, 80, 30, 120))  # the centred square starts at x=100
    write_sample(root, "wide", (400, 200), (10, 90, 390, 95))  # no 200x200 square holds it
    save(noise_image((400, 200), seed=3), root / "good/n.png")
    out = cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", "crop")
    assert out["resize_notes"] == {"crop_fallback_letterbox": 1, "crop_shifted": 1}
    recs = records(workspace)
    centred, left, wide = (recs[make_key("line", f"dent/{n}.png")] for n in ("centred", "left", "wide"))
    assert centred.resize_note is None and centred.geometry.crop_box == (100.0, 0.0, 300.0, 200.0)
    assert left.resize_note == "crop_shifted" and left.geometry.crop_box == (5.0, 0.0, 205.0, 200.0)
    assert wide.resize_note == "crop_fallback_letterbox" and wide.geometry.resize_mode == "letterbox"
    for r in (centred, left, wide):
        assert r.label == "defective" and pixels(workspace, r.mask).any() and r.boxes
        back = mask_to_original(pixels(workspace, r.mask), r.geometry, 400, 200) > 0
        original = region_mask((400, 200), *{"centred": [(190, 90, 210, 110)], "left": [(5, 80, 30, 120)],
                                             "wide": [(10, 90, 390, 95)]}[r.source_path.split("/")[1][:-4]]) > 0
        assert (back & original).sum() / (back | original).sum() > 0.8


@pytest.mark.parametrize("mode", ["letterbox", "stretch", "crop", "tile"])
def test_no_mode_stores_a_defect_its_pixels_lack(tmp_path, cli, workspace, mode):
    root = tmp_path / "f"
    write_sample(root, "thin", (4000, 400), (1001, 50, 1002, 350))  # 1 px wide: nearest sampling misses it
    write_sample(root, "corner", (900, 300), (880, 280, 900, 300))
    write_sample(root, "dot", (1000, 1000), (3, 3, 4, 4))
    out = cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", mode)
    assert out["quarantined"] == 0
    recs = records(workspace)
    assert recs
    for r in recs.values():
        if r.label == "defective":
            assert r.mask is not None and pixels(workspace, r.mask).any(), (mode, r.key)
            assert r.boxes and r.defect_types, (mode, r.key)
        else:
            assert not pixels(workspace, r.mask).any() and not r.defect_types and not r.boxes, (mode, r.key)
    by_parent = {}
    for r in recs.values():
        by_parent.setdefault(r.parent or r.key, []).append(r)
    for parent in by_parent.values():  # every image keeps its defect in at least one record
        assert any(r.label == "defective" for r in parent), mode


def _blobs(size, seed):
    w, h = size
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(6):
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 20))
        m[y:y + int(rng.integers(1, 20)), x:x + int(rng.integers(1, 40))] = 255
    return m


@pytest.mark.parametrize("size", [(1600, 256), (4096, 256), (256, 1600)])
def test_tile_windows_round_trip_masks_and_boxes(size):
    w, h = size
    original = _blobs(size, seed=w)
    tiles = tile_geometries(w, h)
    assert len(tiles) > 1 and all(g.resize_mode == "tile" and g.content_box == (0, 0, 512, 512) for g in tiles)
    back = np.zeros_like(original)
    for g in tiles:
        back = np.maximum(back, mask_to_original(mask_to_canvas(original, g), g, w, h))
    assert np.array_equal(back, original)
    box = (317.0, 40.5, 1203.0, 200.0) if w > h else (40.5, 317.0, 200.0, 1203.0)
    pieces = [b for b in (transform_box(g, "scratch", *box) for g in tiles) if b is not None]
    corners = [(*g.to_original(b.x0, b.y0), *g.to_original(b.x1, b.y1))
               for g in tiles for b in [transform_box(g, "scratch", *box)] if b is not None]
    assert len(pieces) >= 2
    union = (min(c[0] for c in corners), min(c[1] for c in corners), max(c[2] for c in corners),
             max(c[3] for c in corners))
    assert union == pytest.approx(box, abs=0.02)


@pytest.mark.parametrize("size", [(1600, 256), (4096, 256)])
def test_tile_ingest_records_reassemble_the_strip(tmp_path, cli, workspace, size):
    w, h = size
    root = tmp_path / "strips"
    write_sample(root, "s", size, (40, 20, 90, 60), (w - 300, 100, w - 250, 250))
    save(noise_image((300, 280), seed=5), root / "good/square.png")  # not a strip: letterboxed
    out = cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", "tile")
    recs = records(workspace)
    key = make_key("line", "dent/s.png")
    tiles = sorted((r for r in recs.values() if r.parent == key), key=lambda r: r.key)
    assert [r.key for r in tiles] == [f"{key}/t{i:02d}" for i in range(len(tiles))] and len(tiles) >= 7
    assert key not in recs and recs[make_key("line", "good/square.png")].geometry.resize_mode == "letterbox"
    assert out["records"] == len(tiles) + 1 and out["written"] == 2  # samples written, records stored
    labels = [r.label for r in tiles]
    assert labels[0] == labels[-1] == "defective" and "normal" in labels  # own labels from own pixels
    back = np.zeros((h, w), np.uint8)
    for r in tiles:
        m = pixels(workspace, r.mask)
        assert (r.label == "defective") == bool(m.any()) and (r.defect_types == ["dent"]) == bool(m.any())
        assert r.sha256 == tiles[0].sha256 and r.source_path == "dent/s.png"
        back = np.maximum(back, mask_to_original(m, r.geometry, w, h))
        classes = pixels(workspace, r.class_mask)
        assert np.array_equal(classes > 0, m > 0)
    assert np.array_equal(back, region_mask(size, (40, 20, 90, 60), (w - 300, 100, w - 250, 250)))
    # back to letterbox: the tiles go, one record takes their place (and the other way round)
    cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", "letterbox")
    recs = records(workspace)
    assert key in recs and not any(r.parent == key for r in recs.values()) and len(recs) == 2
    cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", "tile")
    recs = records(workspace)
    assert key not in recs and sum(r.parent == key for r in recs.values()) == len(tiles)
    again = cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", "tile")
    assert again["unchanged"] == 2 and again["written"] == 0  # a tiled sample is skipped like any other


def test_tile_a_defect_without_mask_or_boxes_is_letterboxed(tmp_path, cli, workspace):
    root = tmp_path / "f"
    write_sample(root, "unlocalized", (1600, 256))  # class folder only: which window has the defect?
    save(noise_image((1600, 256), seed=9), root / "good/n.png")
    out = cli("ingest", "folder", "--root", str(root), *GENERIC, "--resize-mode", "tile")
    assert out["resize_notes"] == {"tile_fallback_letterbox": 1}
    recs = records(workspace)
    u = recs[make_key("line", "dent/unlocalized.png")]
    assert u.label == "defective" and u.geometry.resize_mode == "letterbox"
    assert u.resize_note == "tile_fallback_letterbox"
    assert sum(r.parent == make_key("line", "good/n.png") for r in recs.values()) >= 7  # normal strips tile


def _realdata(name):
    """`$IMDD_REALDATA/<name>`, else `shared/realdata/<name>` next to the checkout or one level up."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    roots = [Path(os.environ["IMDD_REALDATA"])] if os.environ.get("IMDD_REALDATA") else []
    roots += [repo.parent / "shared" / "realdata", repo.parent.parent / "shared" / "realdata"]
    return next((root / name for root in roots if (root / name).is_dir()), None)


MTD = _realdata("magnetic_tile")


@pytest.mark.skipif(MTD is None, reason="real Magnetic Tile samples not found (set IMDD_REALDATA)")
def test_real_magnetic_tile_crop_keeps_every_defect(cli, workspace):
    out = cli("ingest", "mtd", "--root", str(MTD), "--workers", "1", "--resize-mode", "crop")
    assert out["quarantined"] == 0 and out["resize_notes"]  # the centred square cut some defects away
    for r in records(workspace).values():
        mask = pixels(workspace, r.mask) if r.mask else None
        if r.label == "defective":
            assert mask is not None and mask.any() and r.boxes, (r.key, r.resize_note)
            assert r.geometry.resize_mode == ("letterbox" if r.resize_note == "crop_fallback_letterbox" else "crop")
