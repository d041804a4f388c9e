"""Shared helpers of the generic-adapter tests (test_generic_*.py): ingest with the generic
options, tiny images, and reading records, masks and boxes back from the catalog."""

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save
from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.workspace import Workspace

GENERIC = ("--license", "CC-BY-4.0", "--domain", "pcb", "--source-id", "myline", "--workers", "1")
SIZE = (64, 48)


def ingest(cli, adapter, root, *extra, expect=0):
    return cli("ingest", adapter, "--root", str(root), *GENERIC, *extra, expect=expect)


def img(path, seed=0, size=SIZE, mode="RGB"):
    return save(noise_image(size, mode, seed=seed), path)


def record(workspace, rel):
    with Workspace(workspace).catalog() as catalog:
        rec = catalog.get(make_key("myline", rel))
    assert rec is not None, rel
    return rec


def original_mask(workspace, rec) -> np.ndarray:
    canvas = np.asarray(Image.open(Workspace(workspace).store().path(rec.mask)))
    return mask_to_original(canvas, rec.geometry, rec.orig_width, rec.orig_height) > 0


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def canvas_box(rec, x0, y0, x1, y1):
    ax, ay = rec.geometry.to_canvas(x0, y0)
    bx, by = rec.geometry.to_canvas(x1, y1)
    return pytest.approx((ax, ay, bx, by), abs=0.02)


def box_tuple(box):
    return (box.x0, box.y0, box.x1, box.y1)


def quarantine(out):
    return {q["path"]: q["reason"] for q in out["quarantine"]}


def coco_runs(mask) -> list[int]:
    """A boolean mask as COCO's uncompressed RLE counts: alternating run lengths in column-major
    order, starting with a (possibly empty) run of background."""
    runs, current, n = [], False, 0
    for v in mask.flatten(order="F"):
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
    return runs
