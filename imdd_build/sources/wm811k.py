"""WM-811K wafer bin maps (Wu, Jang, Chen, IEEE TSM 2015), as the single pickle `LSWMD.pkl`.

Native form: one pandas DataFrame pickled by Python 2 and an old pandas (~0.18), protocol 2,
811,457 rows with columns `waferMap` (2-D uint8: 0 no die, 1 pass, 2 fail), `dieSize`,
`lotName`, `waferIndex`, `trianTestLabel` (sic, the original typo; `trainTestLabel` accepted too)
and `failureType`. The two label columns hold nested 1x1 object arrays (`[['Edge-Loc']]`,
`[['Training']]`) or empty arrays for the ~638k unlabelled wafers. `--root` is the pickle itself
or a folder holding it (`LSWMD.pkl` matched case-insensitively, also one or two folders down, e.g.
`MIR-WM811K/LSWMD.pkl`; else the only `*.pkl` there).

How it is read (no pandas for the original file; a frame re-pickled by pandas 2.x or later is read
through pandas when installed, else refused saying so: `pandas_pickle`): `legacy_pickle.read_frame`
unpickles with latin1 and stand-ins for
the pandas/numpy classes, leaving every map's byte payload on disk and keeping only its offset,
length and shape. The adapter compacts that skeleton into a per-row index (labels, split, lot,
wafer index, die size, payload locations; ~60 bytes a row) and drops it; `samples()` then seeks to
each map in file order, so only one map is in memory at a time. The index is built once per
adapter (`count_hint()` and `samples()` share it).

Each labelled map becomes one sample: `pixels` = the map rendered through a fixed palette
(0 black, 1 gray 128, 2 white) and upscaled nearest-neighbour by index mapping (palette
lookup, then `take` along rows and columns) so that the longer
side is exactly `render_size` (default 512, `--opt render_size=N`): the normalizer then leaves it
as is (`nearest=True` anyway). Defective wafers get `ArrayMask` = their fail dies (value 2) at the
same scale; `none` wafers are normal and get no mask. `rel_path` is `LSWMD.pkl/<row:06d>` (the
DataFrame row position), `product` is the map shape `<rows>x<cols>` (WM-811K products are
identified by their die grid), `source_labels` = [failureType], split from `trianTestLabel`
(Training -> train, Test -> test; a labelled row without split label gets a seeded split by lot).
Unlabelled maps are skipped unless `include_unlabeled` (CLI `--include-unlabeled`): then
split=unlabeled, label unknown, no source labels,
`attributes.labelled = false`. Maps whose payload is truncated, empty, or holds values other
than 0/1/2 are quarantined. `--category` filters on the product (map shape).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter
from ..sourcekit.legacy_pickle import Arr, LegacyPickleError, Payload, unwrap
from ..sourcekit.masks import ArrayMask
from ..sourcekit.options import CategoryOptions, Field
from ..sourcekit.pandas_pickle import read_any_frame

PICKLE_NAME = "LSWMD.pkl"
LABELS = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
NORMAL_LABEL = "none"
PALETTE = np.array([[0, 0, 0], [128, 128, 128], [255, 255, 255]], dtype=np.uint8)
SPLITS = {"training": "train", "train": "train", "test": "test", "testing": "test"}


@lru_cache(maxsize=1024)
def _scale_index(h: int, w: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row and column of every output row/column: longer side exactly `size`, aspect kept."""
    scale = size / max(h, w)
    out_h, out_w = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    return np.arange(out_h) * h // out_h, np.arange(out_w) * w // out_w


def render(wafer: np.ndarray, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, bool fail-die mask), both nearest-upscaled to longer side `size`.

    Vectorized: palette lookup at map resolution, then two `take` gathers (rows, then columns).
    """
    rows, cols = _scale_index(wafer.shape[0], wafer.shape[1], size)
    image = PALETTE[wafer].take(rows, axis=0).take(cols, axis=1)
    fail = (wafer == 2).take(rows, axis=0).take(cols, axis=1)
    return image, fail


class _Index:
    """Per-row facts of the whole pickle, compact (numpy arrays, shared strings)."""

    def __init__(self, n: int):
        self.n = n
        self.offset = np.full(n, -1, dtype=np.int64)
        self.length = np.zeros(n, dtype=np.int64)
        self.h = np.zeros(n, dtype=np.int32)
        self.w = np.zeros(n, dtype=np.int32)
        self.fmt = np.zeros(n, dtype=np.int16)  # index into formats: (dtype str, fortran, codec)
        self.formats: list[tuple[str, bool, str]] = []
        self.inline: dict[int, object] = {}  # row -> bytes or np.ndarray (small or odd maps)
        self.problem: dict[int, str] = {}  # row -> why the map cannot be read
        self.label: list[str | None] = [None] * n
        self.split: list[str | None] = [None] * n
        self.lot: list[str | None] = [None] * n
        self.wafer_index = np.full(n, np.nan)
        self.die_size = np.full(n, np.nan)


def _numbers(column, n: int, fh) -> np.ndarray:
    out = np.full(n, np.nan)
    if column is None:
        return out
    for i, v in enumerate(column.cells(n, fh)):
        v = unwrap(v, fh)
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def build_index(path: Path) -> _Index:
    """Pass 1: read the pickle's skeleton and keep only what each row needs later."""
    try:
        table = read_any_frame(path)
    except LegacyPickleError as exc:
        raise RootError(f"{path}: {exc}") from None
    maps = table.column("waferMap")
    failure = table.column("failureType")
    if maps is None or failure is None:
        raise RootError(f"{path}: not the WM-811K DataFrame (columns {sorted(table.columns)}; "
                        "expected waferMap and failureType)")
    split = table.column("trianTestLabel", "trainTestLabel")
    n = table.n_rows
    index = _Index(n)
    interned: dict[str, str] = {}

    def intern(value) -> str | None:
        if value is None:
            return None
        value = str(value)
        return interned.setdefault(value, value)

    with path.open("rb") as fh:
        formats: dict[tuple[str, bool, str], int] = {}
        for i, cell in enumerate(maps.cells(n, fh)):
            if not isinstance(cell, Arr):
                if isinstance(cell, np.ndarray):
                    index.inline[i] = cell
                    index.h[i], index.w[i] = (cell.shape + (0, 0))[:2]
                else:
                    index.problem[i] = f"waferMap cell is a {type(cell).__name__}, not an array"
                continue
            if len(cell.shape) != 2 or cell.is_object:
                index.problem[i] = f"waferMap is a {len(cell.shape)}-D {np.dtype(cell.dtype)} array, expected 2-D numbers"
                continue
            index.h[i], index.w[i] = cell.shape
            data = cell.data
            codec = data.codec if isinstance(data, Payload) else "inline"
            key = (np.dtype(cell.dtype).str, cell.fortran, codec)
            index.fmt[i] = formats.setdefault(key, len(formats))
            if isinstance(data, Payload):
                index.offset[i], index.length[i] = data.offset, data.length
            else:
                index.inline[i] = data
        index.formats = list(formats)
        for i, cell in enumerate(failure.cells(n, fh)):
            index.label[i] = intern(unwrap(cell, fh))
        if split is not None:
            for i, cell in enumerate(split.cells(n, fh)):
                index.split[i] = intern(unwrap(cell, fh))
        lots = table.column("lotName")
        if lots is not None:
            for i, cell in enumerate(lots.cells(n, fh)):
                index.lot[i] = intern(unwrap(cell, fh))
        index.wafer_index = _numbers(table.column("waferIndex"), n, fh)
        index.die_size = _numbers(table.column("dieSize"), n, fh)
    del table, maps, failure, split
    gc.collect()
    return index


def _finite(value: float, cast=float):
    return cast(value) if math.isfinite(value) else None


class WM811KAdapter(SourceAdapter):
    id = "wm811k"
    expected = "LSWMD.pkl rows with a waferMap and a failureType (unlabelled rows need --include-unlabeled)"

    class Options(CategoryOptions):
        include_unlabeled: bool = Field(False, description="Keep unlabelled wafers (split=unlabeled; also "
                                                           "--include-unlabeled).")
        render_size: int = Field(512, ge=1, le=4096, description="Rendered wafer map side in pixels.")

    labels = LABELS
    root_is_dir = False

    def __init__(self, root: Path, entry=None, **options):
        super().__init__(root, entry, **options)
        self._index: _Index | None = None
        self.size = int(self.options.get("render_size") or 512)

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.pickle = self._find_pickle()
        return self.pickle.parent

    def _find_pickle(self) -> Path:
        if self.root.is_file():
            return self.root
        found: list[Path] = []
        for depth in range(3):
            level = sorted(p for p in self.root.glob("/".join(["*"] * (depth + 1)))
                           if p.is_file() and not any(part.startswith((".", "__")) for part in p.relative_to(self.root).parts))
            named = [p for p in level if p.name.lower() == PICKLE_NAME.lower()]
            if named:
                return named[0]
            found += [p for p in level if p.suffix.lower() in (".pkl", ".pickle")]
        if len(found) == 1:
            return found[0]
        what = "no LSWMD.pkl" if not found else f"no LSWMD.pkl and {len(found)} other pickles"
        raise RootError(f"{self.root}: {what} (give the pickle itself or the folder holding it)")

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = build_index(self.pickle)
        return self._index

    def _selected(self) -> Iterator[int]:
        idx = self.index
        include_unlabeled = bool(self.options.get("include_unlabeled"))
        wanted = set(self.options.get("categories") or [])
        for row in range(idx.n):
            if idx.label[row] is None and not include_unlabeled:
                continue
            if wanted and f"{idx.h[row]}x{idx.w[row]}" not in wanted:
                continue
            yield row

    def count_hint(self) -> int | None:
        return sum(1 for _ in self._selected())

    def _read_map(self, fh, row: int) -> np.ndarray:
        idx = self.index
        h, w = int(idx.h[row]), int(idx.w[row])
        if row in idx.inline:
            data = idx.inline[row]
            if isinstance(data, np.ndarray):
                return data
        else:
            data = None
        dtype, fortran, codec = idx.formats[idx.fmt[row]]
        if data is None:
            data = Payload(int(idx.offset[row]), int(idx.length[row]), codec).read(fh)
        if isinstance(data, str):
            data = data.encode("latin1")
        dtype = np.dtype(dtype)
        if len(data) != h * w * dtype.itemsize:
            raise ValueError(f"map data has {len(data)} bytes, {h}x{w} of {dtype} needs {h * w * dtype.itemsize}")
        return np.frombuffer(data, dtype=dtype).reshape((h, w), order="F" if fortran else "C")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        idx = self.index
        with self.pickle.open("rb") as fh:
            for row in self._selected():
                rel = f"{PICKLE_NAME}/{row:06d}"
                if row in idx.problem:
                    yield Quarantined(source=self.source_id, path=rel, reason=idx.problem[row])
                    continue
                try:
                    wafer = self._read_map(fh, row)
                except (ValueError, LegacyPickleError) as exc:
                    yield Quarantined(source=self.source_id, path=rel, reason=f"unreadable waferMap: {exc}")
                    continue
                if wafer.size == 0:
                    yield Quarantined(source=self.source_id, path=rel, reason=f"empty waferMap {wafer.shape}")
                    continue
                if wafer.dtype.kind not in "uib" or wafer.min() < 0 or wafer.max() > 2:
                    values = sorted(set(np.unique(wafer).tolist()) - {0, 1, 2})[:5]
                    yield Quarantined(source=self.source_id, path=rel,
                                      reason=f"waferMap has values other than 0/1/2: {values}")
                    continue
                yield self._sample(row, rel, wafer.astype(np.uint8, copy=False))

    def _sample(self, row: int, rel: str, wafer: np.ndarray) -> RawSample:
        idx = self.index
        label, split_label, lot = idx.label[row], idx.split[row], idx.lot[row]
        pixels, fail = render(wafer, self.size)
        attributes = {"lot": lot, "wafer_index": _finite(idx.wafer_index[row], int),
                      "die_size": _finite(idx.die_size[row]), "row": row,
                      "map_rows": int(wafer.shape[0]), "map_cols": int(wafer.shape[1]),
                      "fail_dies": int(np.count_nonzero(wafer == 2)), "labelled": label is not None}
        common = {"rel_path": rel, "product": f"{wafer.shape[0]}x{wafer.shape[1]}", "pixels": pixels,
                  "nearest": True, "attributes": attributes}
        if label is None:
            return RawSample(source_split=split_label or "", label="unknown", split="unlabeled", **common)
        normal = label.lower() == NORMAL_LABEL
        split, origin = None, "official"
        if split_label is None or split_label.lower() not in SPLITS:
            split, origin = self.seeded(lot or rel), "seeded"
        else:
            split = SPLITS[split_label.lower()]
        return RawSample(source_split=split_label or "", label="normal" if normal else "defective",
                         source_labels=[label], split=split, split_origin=origin,
                         mask=None if normal else ArrayMask(fail), **common)
