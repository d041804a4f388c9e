"""Writer of legacy DataFrame pickles for the tests and the benchmark (the inverse of
`imdd_build.sourcekit.legacy_pickle`; test code, so it is not shipped in the product package).

`write_legacy_frame()` writes a DataFrame the way Python 2 + pandas 0.18 did (protocol 2,
BINSTRING strings, `pandas.indexes.base._new_Index`, `numpy.core.multiarray._reconstruct`), from
plain Python lists and numpy arrays, without pandas.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from struct import pack
from typing import ClassVar

import numpy as np


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Reduce:
    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state


class _NewObj:
    def __init__(self, cls, state):
        self.cls, self.state = cls, state


class _Py2Pickler(pickle._Pickler):
    """Protocol 2, `str` as Python 2 BINSTRING (latin1), numpy arrays as numpy 1.x on Python 2."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def __init__(self, file, modules: dict[str, str]):
        super().__init__(file, protocol=2)
        self._globals: dict[tuple[str, str], _Global] = {}
        self._dtypes: dict[str, _Reduce] = {}
        self.modules = modules

    def glob(self, module: str, name: str) -> _Global:
        return self._globals.setdefault((module, name), _Global(module, name))

    def save_global_stub(self, obj: _Global):
        self.write(pickle.GLOBAL + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memoize(obj)

    def save_reduce_stub(self, obj: _Reduce, memo_as=None):
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)
        self.memoize(obj if memo_as is None else memo_as)
        if obj.state is not None:
            self.save(obj.state)
            self.write(pickle.BUILD)

    def save_newobj_stub(self, obj: _NewObj):
        self.save(obj.cls)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + pack("<i", len(data)) + data)
        self.memoize(obj)

    def dtype(self, dtype: np.dtype) -> _Reduce:
        key = dtype.str
        if key not in self._dtypes:
            code = f"{dtype.kind}{dtype.itemsize}" if dtype.kind != "O" else "O8"  # numpy 1.x: 'U12' for <U3
            order = "|" if dtype.byteorder == "|" else "<"
            flexible = dtype.kind in "SUV"
            self._dtypes[key] = _Reduce(self.glob("numpy", "dtype"), (code, 0, 1),
                                        (3, order, None, None, None, dtype.itemsize if flexible else -1,
                                         dtype.alignment if flexible else -1, int(dtype.flags)))
        return self._dtypes[key]

    def save_ndarray(self, arr: np.ndarray):
        fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
        order = "F" if fortran else "C"
        if arr.dtype.hasobject:
            data = list(arr.ravel(order=order))
        else:
            data = _Py2Bytes(np.asarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes(order=order))
        self.save_reduce_stub(_Reduce(self.glob("numpy.core.multiarray", "_reconstruct"),
                                      (self.glob("numpy", "ndarray"), (0,), "b"),
                                      (1, tuple(int(s) for s in arr.shape), self.dtype(arr.dtype), fortran, data)),
                              memo_as=arr)

    def index(self, data: np.ndarray | None = None, rows: int | None = None) -> _Reduce:
        mod = self.modules["index"]
        if rows is not None:
            return _Reduce(self.glob(mod, "_new_Index"), (self.glob(self.modules["range"], "RangeIndex"),
                                                          {"start": 0, "stop": rows, "step": 1, "name": None}))
        return _Reduce(self.glob(mod, "_new_Index"), (self.glob(mod, "Index"), {"data": data, "name": None}))


class _Py2Bytes(bytes):
    pass


_Py2Pickler.dispatch.update({
    _Global: _Py2Pickler.save_global_stub, _Reduce: _Py2Pickler.save_reduce_stub,
    _NewObj: _Py2Pickler.save_newobj_stub, str: _Py2Pickler.save_py2_str, _Py2Bytes: _Py2Pickler.save_py2_str,
    np.ndarray: _Py2Pickler.save_ndarray,
})

PANDAS_018 = {"frame": "pandas.core.frame", "internals": "pandas.core.internals",
              "index": "pandas.indexes.base", "range": "pandas.indexes.range"}


def write_legacy_frame(path: Path, columns: dict[str, list], modules: dict[str, str] | None = None) -> Path:
    """Write `columns` (name -> list of cells) as a Python 2 / pandas 0.18 DataFrame pickle.

    Float/int columns (all cells numbers) become one float64 block, everything else one object
    block (cells kept as given: numpy arrays, nested 1x1 object arrays, strings)."""
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    numeric = [c for c in names if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in columns[c])]
    objects = [c for c in names if c not in numeric]
    blocks = []
    if numeric:
        values = np.array([[float(v) for v in columns[c]] for c in numeric], dtype=np.float64)
        blocks.append((values, [names.index(c) for c in numeric], numeric))
    if objects:
        values = np.empty((len(objects), n), dtype=object)
        for i, c in enumerate(objects):
            for j, v in enumerate(columns[c]):
                values[i, j] = v
        blocks.append((values, [names.index(c) for c in objects], objects))
    path = Path(path)
    with path.open("wb") as fh:
        p = _Py2Pickler(fh, {**PANDAS_018, **(modules or {})})
        axes = [p.index(np.array(names, dtype=object)), p.index(rows=n)]
        block_items = [p.index(np.array(cols, dtype=object)) for _, _, cols in blocks]

        def locs(pos: list[int]):
            if pos == list(range(pos[0], pos[-1] + 1)):
                return slice(pos[0], pos[-1] + 1, None)
            return np.array(pos, dtype=np.int64)

        extra = {"0.14.1": {"axes": axes, "blocks": [{"values": v, "mgr_locs": locs(pos)} for v, pos, _ in blocks]}}
        manager = _NewObj(p.glob(p.modules["internals"], "BlockManager"),
                          (axes, [v for v, _, _ in blocks], block_items, extra))
        frame = _NewObj(p.glob(p.modules["frame"], "DataFrame"),
                        {"_data": manager, "_typ": "dataframe", "_metadata": []})
        p.dump(frame)
    return path
