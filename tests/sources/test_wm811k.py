"""WM-811K: a generated LSWMD.pkl that looks like the real one (Python 2 + pandas 0.18, protocol 2).

The fixture pickle is written by `write_legacy_frame` (BINSTRING latin1 strings, `pandas.indexes.base`
`_new_Index`, `numpy.core.multiarray._reconstruct`, one float block and one object block), with the
`trianTestLabel` typo, nested 1x1 object label arrays, empty arrays for unlabelled wafers, a
Fortran-ordered map, a tiny map kept inline, labels as numpy unicode arrays in one row, a non-ASCII
lot name and a map with an invalid die value.
"""

from __future__ import annotations

import io
import pickle
import pickletools

import numpy as np
import pytest
from PIL import Image

from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError
from imdd_build.sourcekit.legacy_pickle import (
    Arr,
    LegacyUnpickler,
    Payload,
    memo_reads,
    read_frame,
    unwrap,
)
from imdd_build.sources.wm811k import PALETTE, WM811KAdapter, render
from imdd_build.workspace import Workspace
from legacy_pickle_writer import write_legacy_frame


def nested(value):
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = value
    return cell


def wafer(h: int, w: int, seed: int, fail_box=None) -> np.ndarray:
    """A round wafer: 0 outside, 1 pass, 2 fail (a few random fails plus an optional block)."""
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
    m = inside.astype(np.uint8)
    rng = np.random.default_rng(seed)
    m[inside & (rng.random((h, w)) < 0.05)] = 2
    if fail_box:
        y0, x0, y1, x1 = fail_box
        m[y0:y1, x0:x1][inside[y0:y1, x0:x1]] = 2
    return m


EMPTY_2D = np.empty((0, 0), dtype=object)
EMPTY_1D = np.empty((0,), dtype=object)

# row: (map, failureType, trianTestLabel)
ROWS = [
    (wafer(26, 26, 0, (0, 18, 10, 26)), "Edge-Loc", "Training"),
    (wafer(32, 29, 1), "none", "Test"),
    (wafer(25, 27, 2), None, None),  # unlabelled: empty (0, 0) arrays
    (wafer(25, 27, 3, (9, 9, 16, 18)), "Center", "Test"),
    (np.asfortranarray(wafer(49, 39, 4, (10, 5, 12, 34))), "Scratch", "Training"),  # column-major data
    (wafer(32, 29, 5), "", ""),  # unlabelled: empty (0,) arrays
    (wafer(26, 26, 6), "none", "Training"),
    (wafer(26, 26, 7, (2, 2, 24, 24)), "Near-full", "Test"),
    (wafer(25, 27, 8), "Donut", "Training"),  # gets an invalid die value below
    (wafer(32, 29, 9, (0, 0, 32, 3)), "Edge-Ring", None),  # labelled, split missing -> seeded
    (wafer(6, 21, 10), "Loc", "Test"),  # 126 bytes: small enough to stay inline in the skeleton
]
UNICODE_ROWS = {10}  # labels as nested numpy unicode arrays (dtype <U4) instead of object arrays
ROWS[8][0][5, 5] = 7


def write_lswmd(path):
    maps, failure, split = [], [], []
    for row, (m, ft, tt) in enumerate(ROWS):
        maps.append(m)
        if row in UNICODE_ROWS:
            failure.append(np.array([[ft]]))
            split.append(np.array([[tt]]))
            continue
        failure.append(nested(ft) if ft else (EMPTY_2D if ft is None else EMPTY_1D))
        split.append(nested(tt) if tt else (EMPTY_2D if tt is None else EMPTY_1D))
    n = len(ROWS)
    columns = {
        "waferMap": maps,
        "dieSize": [1683.0 if i % 2 else 939.0 for i in range(n)],
        "lotName": ["lot1"] * 5 + ["lot2"] * 5 + ["lot\xe9"],  # latin1, as Python 2 str
        "waferIndex": [float(i % 25 + 1) for i in range(n)],
        "trianTestLabel": split,
        "failureType": failure,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_legacy_frame(path, columns)


def key(row: int) -> str:
    return make_key("wm811k", f"LSWMD.pkl/{row:06d}")


def test_fixture_pickle_is_python2_pandas018_style(tmp_path):
    path = write_lswmd(tmp_path / "LSWMD.pkl")
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02"  # protocol 2
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert {"SHORT_BINSTRING", "BINSTRING", "NEWOBJ", "REDUCE", "BUILD"} <= ops
    assert "BINUNICODE" not in ops and "SHORT_BINBYTES" not in ops  # strings are Python 2 str
    assert b"pandas.indexes.base\n_new_Index" in data and b"numpy.core.multiarray\n_reconstruct" in data
    assert b"trianTestLabel" in data and b"lot\xe9" in data
    with pytest.raises((ImportError, AttributeError, pickle.UnpicklingError)):  # no pandas, no aliases
        pickle.loads(data, encoding="latin1")


def test_skeleton_leaves_map_payloads_on_disk(tmp_path):
    path = write_lswmd(tmp_path / "LSWMD.pkl")
    table = read_frame(path)
    assert table.n_rows == len(ROWS)
    assert set(table.columns) == {"waferMap", "dieSize", "lotName", "waferIndex", "trianTestLabel", "failureType"}
    with path.open("rb") as fh:
        cells = table.column("waferMap").cells(table.n_rows, fh)
        assert isinstance(cells[0], Arr) and isinstance(cells[0].data, Payload)  # not read
        assert isinstance(cells[10].data, str)  # 126 bytes: inline
        assert cells[4].fortran and cells[4].shape == (49, 39)
        for (m, _, _), cell in zip(ROWS, cells):
            assert np.array_equal(cell.numpy(fh), m)
        labels = [unwrap(c, fh) for c in table.column("failureType").cells(table.n_rows, fh)]
        assert labels == [ft or None for _, ft, _ in ROWS]
        assert table.column("lotName").cells(table.n_rows, fh)[10] == "lot\xe9"


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_payloads_left_on_disk_in_every_protocol(protocol):
    """Python 3 re-saves: bytes via _codecs.encode (2), BINBYTES (3), inside FRAMEs (4), BYTEARRAY8 (5)."""
    rng = np.random.default_rng(protocol)
    arrays = [rng.integers(0, 3, (30 + i, 20 + i)).astype(np.uint8) for i in range(20)]
    arrays.append(np.asfortranarray(np.arange(600, dtype=np.int64).reshape(20, 30)))
    fh = io.BytesIO(pickle.dumps({"maps": arrays, "names": ["lot1", "lot1"]}, protocol=protocol))
    keep = memo_reads(fh)
    fh.seek(0)
    obj = LegacyUnpickler(fh, memo_keep=keep).load()
    assert all(isinstance(a, Arr) and isinstance(a.data, Payload) for a in obj["maps"])
    assert all(np.array_equal(a.numpy(fh), b) for a, b in zip(obj["maps"], arrays))
    assert obj["names"] == ["lot1", "lot1"]


def test_render_is_nearest_and_exact_size():
    m = ROWS[3][0]
    rgb, fail = render(m, 512)
    assert rgb.shape == (round(25 * 512 / 27), 512, 3) and fail.shape == rgb.shape[:2]
    # every output pixel is a palette colour and the fail mask is exactly the white pixels
    assert np.array_equal(fail, (rgb == 255).all(axis=2))
    assert set(map(tuple, rgb.reshape(-1, 3).tolist())) <= set(map(tuple, PALETTE.tolist()))
    # nearest: downsampling the render at cell centres gives the map back
    h, w = m.shape
    ys = ((np.arange(h) + 0.5) * rgb.shape[0] / h).astype(int)
    xs = ((np.arange(w) + 0.5) * rgb.shape[1] / w).astype(int)
    back = np.select([(rgb[ys][:, xs] == c).all(axis=2) for c in PALETTE], [0, 1, 2])
    assert np.array_equal(back, m)


def test_ingest_labelled_masks_splits_quarantine_and_rerun(tmp_path, cli, workspace):
    root = tmp_path / "wm811k"
    write_lswmd(root / "LSWMD.pkl")
    (root / "readme.txt").write_text("WM-811K\n")
    out = cli("ingest", "wm811k", "--root", str(root), "--workers", "1")
    # 9 labelled rows; row 8 has a die value 7 -> quarantined
    assert out["records"] == 8 and out["quarantined"] == 1
    seeded = WM811KAdapter(root).seeded("lot2")
    expected_split = {"train": 3, "test": 4}
    expected_split[seeded] = expected_split.get(seeded, 0) + 1
    assert out["by_split"] == expected_split
    assert out["by_label"] == {"defective": 6, "normal": 2}
    assert out["by_defect_type"] == {"center_cluster": 1, "edge_localized_cluster": 1, "edge_ring": 1,
                                     "localized_cluster": 1, "near_full_failure": 1, "scratch": 1}
    assert out["quarantine"] == [{"path": "LSWMD.pkl/000008", "reason": "waferMap has values other than 0/1/2: [7]"}]
    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        assert catalog.get(key(2)) is None and catalog.get(key(5)) is None  # unlabelled skipped
        edge = catalog.get(key(0))
        assert edge.label == "defective" and edge.source_labels == ["Edge-Loc"]
        assert edge.defect_types == ["edge_localized_cluster"] and edge.split == "train"
        assert edge.source_split == "Training" and edge.split_origin == "official" and edge.domain == "wafer"
        assert edge.product == "26x26" and edge.orig_width == 512 and edge.orig_height == 512
        assert edge.source_attributes == {"lot": "lot1", "wafer_index": 1, "die_size": 939.0, "row": 0,
                                          "map_rows": 26, "map_cols": 26,
                                          "fail_dies": int((ROWS[0][0] == 2).sum()), "labelled": True}
        assert edge.attributes.basis == "mask" and edge.boxes
        normal = catalog.get(key(1))
        assert normal.label == "normal" and normal.mask is None and normal.source_labels == ["none"]
        assert normal.split == "test" and normal.defect_types == []
        ring = catalog.get(key(9))
        assert ring.split == seeded and ring.split_origin == "seeded" and ring.source_split == ""
        assert catalog.get(key(10)).source_attributes["lot"] == "lot\xe9"
        for row in (0, 3, 4, 7, 9, 10):
            record = catalog.get(key(row))
            m = ROWS[row][0]
            rgb, fail = render(m, 512)
            canvas_mask = np.asarray(Image.open(ws.store().path(record.mask))) > 0
            # the stored mask mapped back to the rendered size is exactly the fail dies
            back = mask_to_original(canvas_mask.astype(np.uint8), record.geometry, record.orig_width,
                                    record.orig_height) > 0
            assert np.array_equal(back, fail), row
            # the image is the palette rendering, unchanged (no interpolation): white = fail dies
            image = np.asarray(Image.open(ws.store().path(record.image)).convert("RGB"))
            x0, y0, x1, y1 = record.geometry.content_box
            assert np.array_equal(image[y0:y1, x0:x1], rgb), row
            assert record.attributes.area_fraction > 0
    again = cli("ingest", "wm811k", "--root", str(root), "--workers", "1")
    assert again["written"] == 0 and again["unchanged"] == 8 and again["records"] == 8


def test_include_unlabeled_and_file_root(tmp_path, cli, workspace):
    path = write_lswmd(tmp_path / "data" / "LSWMD.pkl")
    assert WM811KAdapter(path, include_unlabeled=True).count_hint() == len(ROWS)
    assert WM811KAdapter(path).count_hint() == 9
    out = cli("ingest", "wm811k", "--root", str(path), "--include-unlabeled", "--workers", "1")
    assert out["records"] == 10 and out["by_split"].get("unlabeled") == 2 and out["by_label"]["unknown"] == 2
    with Workspace(workspace).catalog() as catalog:
        for row in (2, 5):
            r = catalog.get(key(row))
            assert r.split == "unlabeled" and r.label == "unknown" and r.source_labels == [] and r.mask is None
            assert r.source_attributes["labelled"] is False
    # labelled records are the same with or without the flag; a rerun changes nothing
    again = cli("ingest", "wm811k", "--root", str(tmp_path / "data"), "--include-unlabeled", "--workers", "1")
    assert again["written"] == 0 and again["unchanged"] == 10
    # --category filters on the map shape
    only = WM811KAdapter(path, categories=["26x26"])
    assert [s.rel_path for s in only.samples()] == ["LSWMD.pkl/000000", "LSWMD.pkl/000006", "LSWMD.pkl/000007"]


def test_root_errors(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RootError, match="no LSWMD.pkl"):
        WM811KAdapter(tmp_path / "empty")
    out = cli("ingest", "wm811k", "--root", str(tmp_path / "missing.pkl"), expect=2)
    assert "not found" in out["error"]
    hostile = tmp_path / "hostile" / "LSWMD.pkl"
    hostile.parent.mkdir()
    hostile.write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00truet\x85R.")
    out = cli("ingest", "wm811k", "--root", str(hostile), expect=2)
    assert "global posix.system is not allowed" in out["error"]
    other = tmp_path / "other" / "LSWMD.pkl"
    other.parent.mkdir()
    other.write_bytes(pickle.dumps({"waferMap": []}, protocol=2))
    with pytest.raises(RootError, match="not a pandas DataFrame"):
        list(WM811KAdapter(other).samples())
    truncated = tmp_path / "truncated" / "LSWMD.pkl"
    truncated.parent.mkdir()
    data = write_lswmd(tmp_path / "full.pkl").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(RootError, match="not a readable pickle"):
        WM811KAdapter(truncated).count_hint()
