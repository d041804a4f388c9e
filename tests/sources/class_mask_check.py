"""The class-mask contract (issue 15), checked on every workspace an adapter test leaves behind
(tests/conftest.py runs it after each test in tests/sources/)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image

from imdd_build.record import Record
from imdd_build.store import Store


def check_class_masks(workspace: Path) -> int:
    """Assert the class-mask contract on every record of a workspace; returns how many had one."""
    store = Store(workspace / "store")
    db = sqlite3.connect(f"file:{workspace / 'catalog.sqlite'}?mode=ro", uri=True)
    checked = 0
    try:
        for (data,) in db.execute("SELECT data FROM records ORDER BY key"):
            r = Record.model_validate_json(data)
            if r.class_mask is None:
                continue
            assert r.mask is not None, f"{r.key}: class_mask without mask"
            mask = np.asarray(Image.open(store.path(r.mask)))
            classes = np.asarray(Image.open(store.path(r.class_mask)))
            assert classes.shape == mask.shape == (512, 512), r.key
            assert np.array_equal(classes > 0, mask > 0), f"{r.key}: mask and class_mask disagree"
            assert int(classes.max()) <= len(r.defect_types), f"{r.key}: class index past defect_types"
            if r.label == "defective" and mask.any():
                present = sorted(r.defect_types[k - 1] for k in np.unique(classes) if k)
                assert present == sorted(r.attributes.instances), f"{r.key}: instances {r.attributes.instances}"
            checked += 1
    finally:
        db.close()
    return checked
