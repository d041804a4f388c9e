"""WM-811K frames pickled by real pandas (2.x-style object blocks, pandas 3 Arrow strings), read
through pandas; refused with a clear message without it; hostile pickles never run."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest

from imdd_build.sourcekit.base import RootError
from imdd_build.sources.wm811k import WM811KAdapter, render

pd = pytest.importorskip("pandas")

MAPS = [np.array([[0, 1, 1], [1, 2, 1], [0, 1, 0]], np.uint8), np.array([[1, 1], [2, 2]], np.uint8),
        np.ones((4, 5), np.uint8), np.array([[0, 2, 2, 0], [2, 1, 1, 2]], np.uint8)]


def nested(value):
    return np.array([[value]], dtype=object) if value is not None else np.zeros((0, 0))


def frame(object_strings: bool):
    df = pd.DataFrame({
        "waferMap": MAPS, "dieSize": [9.0, 4.0, 20.0, 8.0], "lotName": ["lot1", "lot1", "lot2", "lot3"],
        "waferIndex": [1.0, 2.0, 3.0, 4.0],
        "trianTestLabel": [nested("Training"), nested("Test"), nested(None), nested("Training")],
        "failureType": [nested("Edge-Loc"), nested("none"), nested(None), nested("Scratch")],
    })
    if object_strings:  # the pandas 2.x default: an object block, pickled through _unpickle_block
        df["lotName"] = df["lotName"].astype(object)
    return df


@pytest.mark.parametrize("object_strings", [True, False], ids=["object-strings", "arrow-strings"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_frames_pickled_by_pandas_are_read(tmp_path, protocol, object_strings):
    path = tmp_path / "LSWMD.pkl"
    frame(object_strings).to_pickle(path, protocol=protocol)
    samples = list(WM811KAdapter(path).samples())
    assert [s.rel_path for s in samples] == ["LSWMD.pkl/000000", "LSWMD.pkl/000001", "LSWMD.pkl/000003"]
    assert [(s.label, s.split, s.source_labels, s.product) for s in samples] == [
        ("defective", "train", ["Edge-Loc"], "3x3"), ("normal", "test", ["none"], "2x2"),
        ("defective", "train", ["Scratch"], "2x4")]
    for sample, wafer in zip(samples, [MAPS[0], MAPS[1], MAPS[3]]):
        assert np.array_equal(sample.pixels, render(wafer)[0])
    everything = list(WM811KAdapter(path, include_unlabeled=True).samples())
    assert len(everything) == 4 and everything[2].label == "unknown" and everything[2].split == "unlabeled"


def test_ingest_of_a_pandas_pickle(cli, tmp_path):
    frame(True).to_pickle(tmp_path / "LSWMD.pkl")
    out = cli("ingest", "wm811k", "--root", str(tmp_path), "--workers", "1")
    assert out["records"] == 3 and out["quarantined"] == 0


def test_without_pandas_the_refusal_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "LSWMD.pkl"
    frame(True).to_pickle(path, protocol=4)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(RootError) as info:
        list(WM811KAdapter(path).samples())
    message = str(info.value)
    assert "install pandas" in message and str(path) in message and message.count("\n") == 0


class _Hostile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_hostile_pickle_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(pickle.dumps({"x": _Hostile(target)}, protocol=4))
    with pytest.raises(RootError, match=r"global io\.open is not allowed in a DataFrame pickle$"):
        list(WM811KAdapter(path).samples())
    assert not target.exists()


def test_the_fixture_writer_is_not_in_the_product_package():
    assert importlib.util.find_spec("imdd_build.sources.legacy_pickle_writer") is None
    assert importlib.util.find_spec("legacy_pickle_writer") is not None  # tests/ (on the path in the tests)
