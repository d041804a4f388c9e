"""Registry facts checked against downloads: X-SDD's per-class counts, and `sources --roots`
reporting both what was listed and what yields a sample (CrackForest: 155 photos, 118 with ground truth)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from scipy.io import savemat

from imdd_build.cli import app
from imdd_build.registry import load_registry

XSDD_FOLDERS = {  # the GitHub copy's class folders (X-SDD/datas/<class with blanks>/NNNN.ext)
    "finishing roll printing": ".png", "iron sheet ash": ".jpg", "oxide scale of plate system": ".jpg",
    "oxide scale of temperature system": ".jpg", "red iron": ".jpg", "slag inclusion": ".jpg",
    "surface scratch": ".jpg",
}


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 60, 40)).save(buf, fmt)
    return buf.getvalue()


def write_xsdd(root: Path, counts: dict[str, int]) -> Path:
    """The X-SDD repository layout with `counts` images per class (folded class name -> count)."""
    data = {".png": _encoded("PNG"), ".jpg": _encoded("JPEG")}
    datas = root / "X-SDD" / "datas"
    for k, (folder, ext) in enumerate(XSDD_FOLDERS.items()):
        (datas / folder).mkdir(parents=True)
        for i in range(counts[folder.replace(" ", "_")]):
            (datas / folder / f"{k + 1}{i + 1:03d}{ext}").write_bytes(data[ext])
    return root


def write_crackforest(root: Path, photos: int = 155, labelled: int = 118) -> Path:
    """`image/001.jpg ... 155.jpg`, `groundTruth/<stem>.mat` for the first 118 (listing never decodes)."""
    jpg = _encoded("JPEG")
    (root / "image").mkdir(parents=True)
    (root / "groundTruth").mkdir()
    seg = np.ones((8, 8), np.uint8)
    seg[3, 1:7] = 2
    for n in range(1, photos + 1):
        (root / "image" / f"{n:03d}.jpg").write_bytes(jpg)
        if n <= labelled:
            savemat(root / "groundTruth" / f"{n:03d}.mat", {"groundTruth": {"Segmentation": seg}})
    return root


def test_single_label_class_counts_sum_to_the_total():
    """A per-class note that does not add up (X-SDD's 100 for finishing roll printing) is caught here."""
    registry = load_registry()
    xsdd = registry["xsdd"]
    assert xsdd.class_counts["finishing_roll_printing"] == 203
    for entry in registry.values():
        if entry.class_counts and entry.annotation == ["class"] and "total" in entry.counts:
            assert sum(entry.class_counts.values()) == entry.counts["total"], entry.id


def test_sources_roots_checks_xsdd_per_class(tmp_path, cli):
    published = load_registry()["xsdd"].class_counts
    write_xsdd(tmp_path / "xsdd", published)
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"xsdd": str(tmp_path / "xsdd")}))
    check = cli("sources", "--roots", str(roots))["roots"]["xsdd"]
    assert check["status"] == "complete" and check["found"]["total"] == 1360
    assert check["found"]["by_class"] == published
    # a copy with the 100 finishing-roll-printing images the old note claimed is not complete
    folder = tmp_path / "xsdd/X-SDD/datas/finishing roll printing"
    for path in sorted(folder.iterdir())[100:]:
        path.unlink()
    check = cli("sources", "--roots", str(roots))["roots"]["xsdd"]
    assert check["status"] == "incomplete"
    assert check["differences"] == [{"count": "total", "published": 1360, "found": 1257},
                                    {"count": "defective", "published": 1360, "found": 1257},
                                    {"count": "class finishing_roll_printing", "published": 203, "found": 100}]


def test_sources_roots_reports_listed_and_seen(tmp_path, cli):
    write_crackforest(tmp_path / "CrackForest-dataset-master")
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"crackforest": str(tmp_path / "CrackForest-dataset-master")}))
    check = cli("sources", "--roots", str(roots))["roots"]["crackforest"]
    assert check["status"] == "complete"
    found = check["found"]
    assert (found["listed"], found["total"], found["problems"]) == (155, 118, 37)
    human = cli.runner.invoke(app, ["--workspace", str(cli.workspace), "sources", "--roots", str(roots)])
    assert human.exit_code == 0 and "complete" in human.stdout and "118 of 155" in human.stdout  # a table
