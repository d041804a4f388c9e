"""CrackForest label semantics: label 3 (pavement enclosed by crack loops) is not crack, label 4 is.

The fixture reproduces what the real `groundTruth/*.mat` files hold (BSDS-style segment ids): a crack
loop (2) around a solid block of pavement (3), a thin separate crack piece (4), pavement around (1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sources.crackforest import CfdMatMask, decode_cfd_mat
from imdd_build.store import sha256_file
from imdd_build.workspace import Workspace

SIZE = (64, 32)  # CFD is 480x320; scaled down so the 512 canvas scales by exactly 8


def enclosed_block_map() -> np.ndarray:
    """A 1-based CFD label map: a 2 px crack loop enclosing a label-3 block, and a 1 px label-4 piece."""
    seg = np.ones((SIZE[1], SIZE[0]), np.uint8)
    seg[4:26, 10:41] = 2          # the loop's outer rectangle ...
    seg[6:24, 12:39] = 3          # ... filled inside by the pavement it encloses
    seg[28, 44:60] = 4            # a thin crack piece closed off as its own segment
    return seg


def write_cfd_with_blocks(data: Path) -> np.ndarray:
    seg = enclosed_block_map()
    save(noise_image(SIZE, seed=7), data / "image/101.jpg")
    save(noise_image(SIZE, seed=8), data / "image/102.jpg")
    (data / "groundTruth").mkdir(parents=True)
    cell = np.empty((1, 1), dtype=object)  # as MATLAB writes it: a 1x1 cell holding a struct
    cell[0, 0] = {"Segmentation": seg, "Boundaries": np.zeros_like(seg)}
    savemat(data / "groundTruth/101.mat", {"groundTruth": cell})
    odd = seg.copy()
    odd[0, 0] = 5  # a segment id the real files never use
    savemat(data / "groundTruth/102.mat", {"groundTruth": {"Segmentation": odd}})
    return seg


def test_label_3_is_pavement_and_label_4_is_crack(tmp_path):
    seg = write_cfd_with_blocks(tmp_path / "cfd")
    mask = decode_cfd_mat(tmp_path / "cfd/groundTruth/101.mat")
    loop = int((seg == 2).sum())
    assert loop == 22 * 31 - 18 * 27 and int((seg == 4).sum()) == 16
    assert mask.sum() == loop + 16
    assert not mask[6:24, 12:39].any()       # the enclosed block stays pavement
    assert mask[28, 44:60].all()             # the thin label-4 piece is crack
    assert mask[4:6, 10:41].all() and not mask[0:4].any()


def test_ingest_area_counts_only_cracks(tmp_path, cli, workspace):
    seg = write_cfd_with_blocks(tmp_path / "CrackForest-dataset-master")
    out = cli("ingest", "crackforest", "--root", str(tmp_path), "--workers", "1")
    assert out["records"] == 1
    assert [q["path"] for q in out["quarantine"]] == ["image/102.jpg"]
    assert out["quarantine"][0]["reason"] == (
        "mask groundTruth/102.mat: Segmentation holds label(s) 5; CFD uses 1 pavement, 2 crack, "
        "3 pavement enclosed by cracks, 4 crack")
    crack = int(np.isin(seg, (2, 4)).sum())
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("crackforest", "image/101.jpg"))
    # area over the content box: cracks only, not the ~2.5x larger area `Segmentation > 1` gives
    assert r.attributes.area_fraction == pytest.approx(crack / (SIZE[0] * SIZE[1]), abs=1e-5)
    assert r.attributes.area_fraction < int((seg > 1).sum()) / (SIZE[0] * SIZE[1]) / 2
    assert r.attributes.regions == 2


def test_decoder_rule_is_part_of_the_mask_fingerprint(tmp_path):
    """A catalog built with the old `> 1` rule must be rebuilt on re-ingest, not skipped as unchanged."""
    write_cfd_with_blocks(tmp_path / "cfd")
    fp = CfdMatMask("groundTruth/101.mat").fingerprint(tmp_path / "cfd")
    assert fp != sha256_file(tmp_path / "cfd/groundTruth/101.mat")
    assert fp.startswith(sha256_file(tmp_path / "cfd/groundTruth/101.mat"))
