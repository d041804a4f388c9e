"""Read pandas DataFrame pickles without pandas, streaming the big array payloads from disk.

Written for WM-811K's `LSWMD.pkl` (Python 2, pandas ~0.18, protocol 2) but tolerant of the newer
layouts of the same object (pandas 0.20+/1.x/2.x module paths, protocols 2 to 5):

* `LegacyUnpickler` is a pure-Python `pickle._Unpickler` subclass with `encoding="latin1"` whose
  `find_class` maps a small allow-list of globals to stand-ins: numpy's `_reconstruct`/`ndarray`/
  `_frombuffer` become `Arr` (shape, dtype, order, data), `numpy.dtype` stays numpy's own, every
  pandas frame/manager/block/index class (old `pandas.indexes.*`, `pandas.core.index`, new
  `pandas.core.indexes.*`, `pandas.core.internals[.managers|.blocks]`, RangeIndex, Int64Index, ...)
  becomes a plain object that only keeps its pickled state. Any other global (os.system, ...) is
  refused, so a hostile pickle cannot run code.
* Byte-string payloads of `inline_limit` bytes or more (py2 BINSTRING, BINBYTES, BYTEARRAY8, long
  BINUNICODE) are NOT read: the unpickler records their file offset and length (`Payload`) and
  seeks past them, also inside protocol-4 frames. So loading a 2 GB pickle builds only the
  skeleton (shapes, labels, offsets); `Payload.read()` fetches one array's bytes later.
* Python 2's cPickle memoizes every object; `memo_reads()` first walks the opcodes (payloads
  skipped) to find the memo slots that are ever read back, and the unpickler keeps only those,
  so the skeleton is not held twice.
* `read_frame()` turns the skeleton into a `Table`: column name -> cells, resolved through the
  BlockManager state (`0.14.1` extra state with `mgr_locs`, or the older block-items form).

The inverse, `write_legacy_frame()` (fixtures and benchmarks), lives with the tests
(`tests/legacy_pickle_writer.py`), not in the product package. DataFrames pickled by pandas 2.x
or later (object blocks through `_unpickle_block`, Arrow strings) are read through pandas itself
by `pandas_pickle`, when pandas is installed.

The pieces live in helper modules: `legacy_pickle_stand_ins` (Payload, Arr, pandas stand-ins,
allow-list), `legacy_pickle_memo` (memo pre-scan) and `legacy_pickle_unpickler` (LegacyUnpickler);
this module holds the table view and re-exports their public names.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .legacy_pickle_memo import memo_reads
from .legacy_pickle_stand_ins import (
    INLINE_LIMIT,
    Arr,
    LegacyPickleError,
    PandasBlock,
    PandasFrame,
    PandasPlacement,
    Payload,
    _materialize,
)
from .legacy_pickle_unpickler import LegacyUnpickler


@dataclass
class Column:
    """One column: a block's values (Arr, 2-D (n_cols_in_block, n_rows) or 1-D) and its row."""

    name: str
    values: Any
    row: int | None  # None: 1-D values, the column itself

    def cells(self, n_rows: int, fh) -> list:
        v = self.values
        if not isinstance(v, Arr):
            return list(v)[:n_rows] if self.row is None else list(v[self.row])
        if v.is_object:
            items = v.data or []
            if self.row is None or len(v.shape) == 1:
                return list(items)
            k, n = v.shape
            if v.fortran:
                return items[self.row::k]
            return items[self.row * n:(self.row + 1) * n]
        arr = v.numpy(fh)
        return (arr if self.row is None or arr.ndim == 1 else arr[self.row]).tolist()


@dataclass
class Table:
    path: Path
    n_rows: int
    columns: dict[str, Column]

    def column(self, *names: str) -> Column | None:
        """The first column whose name matches one of `names` case-insensitively."""
        lower = {k.lower(): c for k, c in self.columns.items()}
        for name in names:
            if name.lower() in lower:
                return lower[name.lower()]
        return None


def _locs(locs, n_items: int, fh) -> list[int]:
    if isinstance(locs, PandasPlacement):
        locs = locs.args[0] if locs.args else locs.state
    if isinstance(locs, slice):
        return list(range(*locs.indices(n_items)))
    if isinstance(locs, Arr):
        return [int(i) for i in locs.numpy(fh).ravel()]
    if isinstance(locs, range | list | tuple):
        return [int(i) for i in locs]
    raise LegacyPickleError(f"block placement of type {type(locs).__name__}")


def _blocks(manager, fh) -> tuple[list, list[tuple[Any, list[int]]]]:
    """(axes, [(values, column positions)]) from a BlockManager's pickled state."""
    state = manager.state
    if isinstance(state, tuple) and len(state) >= 4 and isinstance(state[3], dict) and "0.14.1" in state[3]:
        extra = state[3]["0.14.1"]
        axes = list(extra["axes"])
        n_items = axes[0].length(fh)
        return axes, [(b["values"], _locs(b["mgr_locs"], n_items, fh)) for b in extra["blocks"]]
    if isinstance(state, tuple) and len(state) >= 3:  # pandas 0.13: (axes, values, items)
        axes, values, items = state[:3]
        names = axes[0].values(fh)
        pos = {n: i for i, n in enumerate(names)}
        return list(axes), [(v, [pos[n] for n in it.values(fh)]) for v, it in zip(values, items)]
    if isinstance(state, dict) and "axes" in state and "blocks" in state:
        axes = list(state["axes"])
        n_items = axes[0].length(fh)
        out = []
        for b in state["blocks"]:
            values, locs = (b.args[0], b.args[1]) if isinstance(b, PandasBlock) else (b["values"], b["mgr_locs"])
            out.append((values, _locs(locs, n_items, fh)))
        return axes, out
    raise LegacyPickleError(f"block manager state of type {type(state).__name__}")


def read_frame(path: Path, inline_limit: int = INLINE_LIMIT) -> Table:
    """Unpickle a DataFrame's skeleton (big payloads stay on disk); raises LegacyPickleError."""
    path = Path(path)
    with path.open("rb") as fh:
        keep = memo_reads(fh)
        fh.seek(0)
        unpickler = LegacyUnpickler(fh, inline_limit, keep)
        try:
            obj = unpickler.load()
        except LegacyPickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, UnicodeDecodeError, MemoryError) as exc:
            raise LegacyPickleError(f"not a readable pickle ({type(exc).__name__}: {exc})") from None
        finally:
            unpickler.memo.clear()
            del unpickler
        if not isinstance(obj, PandasFrame):
            raise LegacyPickleError(f"the pickle holds a {type(obj).__name__}, not a pandas DataFrame")
        try:
            axes, blocks = _blocks(obj.manager, fh)
            names = [str(n) for n in axes[0].values(fh)]
            n_rows = axes[1].length(fh) if len(axes) > 1 else 0
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LegacyPickleError(f"unexpected DataFrame layout ({type(exc).__name__}: {exc})") from None
        columns: dict[str, Column] = {}
        for values, positions in blocks:
            if isinstance(values, Arr) and len(values.shape) == 2:
                for row, pos in enumerate(positions):
                    columns[names[pos]] = Column(names[pos], values, row)
            else:
                for pos in positions:
                    columns[names[pos]] = Column(names[pos], values, None)
    return Table(path, n_rows, columns)


def unwrap(cell, fh=None):
    """A label cell as a plain value: nested arrays/lists -> first element of first row (None when
    empty), bytes -> latin1 text, numpy scalars -> Python, NaN -> None, text stripped."""
    while True:
        if isinstance(cell, Payload):
            cell = _materialize(cell, fh)
        if isinstance(cell, Arr):
            if cell.size == 0:
                return None
            cell = cell.items()[0] if cell.is_object else cell.numpy(fh).ravel(order="K")[0]
            continue
        if isinstance(cell, np.ndarray):
            if cell.size == 0:
                return None
            cell = cell.ravel(order="K")[0]
            continue
        if isinstance(cell, (list, tuple)):
            if not cell:
                return None
            cell = cell[0]
            continue
        break
    if isinstance(cell, np.generic):
        cell = cell.item()
    if isinstance(cell, (bytes, bytearray)):
        cell = bytes(cell).decode("latin1")
    if isinstance(cell, float) and math.isnan(cell):
        return None
    if isinstance(cell, str):
        cell = cell.strip()
        return cell or None
    return cell


__all__ = ["Arr", "Column", "LegacyPickleError", "LegacyUnpickler", "Payload", "Table", "read_frame", "unwrap"]
