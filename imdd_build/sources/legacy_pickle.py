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

`write_legacy_frame()` is the inverse for fixtures and benchmarks: it writes a DataFrame the way
Python 2 + pandas 0.18 did (protocol 2, BINSTRING strings, `pandas.indexes.base._new_Index`,
`numpy.core.multiarray._reconstruct`), from plain Python lists and numpy arrays, without pandas.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from struct import pack, unpack
from typing import Any, ClassVar

import numpy as np

INLINE_LIMIT = 128  # payloads at least this long stay on disk (Payload); shorter ones are read


class LegacyPickleError(Exception):
    """The file is not a DataFrame pickle we can read (truncated, hostile, wrong object)."""


# --------------------------------------------------------------------------------------------
# payloads left on disk


class Payload:
    """Where a skipped byte string lives in the file. `codec`: raw bytes, or UTF-8 text whose code
    points are the bytes (`utf8latin1`: Python 3 protocol<3 bytes = _codecs.encode(str, 'latin1')),
    or plain UTF-8 text (`utf8`, a long str)."""

    __slots__ = ("codec", "length", "offset")

    def __init__(self, offset: int, length: int, codec: str = "raw"):
        self.offset, self.length, self.codec = offset, length, codec

    def read(self, fh) -> bytes | str:
        fh.seek(self.offset)
        data = fh.read(self.length)
        if len(data) != self.length:
            raise LegacyPickleError(f"payload at byte {self.offset} is truncated")
        if self.codec == "raw":
            return data
        text = data.decode("utf-8", "surrogatepass")
        return text.encode("latin1") if self.codec == "utf8latin1" else text

    def __repr__(self) -> str:
        return f"Payload({self.offset}, {self.length}, {self.codec!r})"


def _materialize(value, fh):
    return value.read(fh) if isinstance(value, Payload) else value


# --------------------------------------------------------------------------------------------
# numpy stand-ins


_SHAPES: dict[tuple, tuple] = {}


class Arr:
    """A pickled numpy array, kept as its state: shape, dtype, Fortran flag and data, where data is
    a list (object arrays), bytes/str (inline raw data) or a Payload (raw data left on disk)."""

    __slots__ = ("data", "dtype", "fortran", "shape")

    def __init__(self, shape=(0,), dtype=None, fortran=False, data=None):
        self.shape, self.dtype, self.fortran, self.data = tuple(shape), dtype, bool(fortran), data

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise LegacyPickleError(f"unexpected ndarray state of type {type(state).__name__}")
        if len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, data)
        shape, dtype, fortran, data = state
        shape = tuple(int(s) for s in shape)
        self.shape = _SHAPES.setdefault(shape, shape)  # ~1k distinct shapes over 811k arrays: share them
        self.dtype, self.fortran, self.data = dtype, bool(fortran), data

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_object(self) -> bool:
        return self.dtype is not None and np.dtype(self.dtype).hasobject

    @property
    def order(self) -> str:
        return "F" if self.fortran else "C"

    def items(self) -> list:
        """The elements of an object array in memory (C or F) order."""
        if not self.is_object:
            raise LegacyPickleError("items() of a non-object array")
        return list(self.data or [])

    def numpy(self, fh=None) -> np.ndarray:
        """The array itself; Payload data is read from `fh`."""
        dtype = np.dtype(self.dtype)
        if dtype.hasobject:
            out = np.empty(self.size, dtype=object)
            for i, v in enumerate(self.data or []):
                out[i] = v
            return out.reshape(self.shape, order=self.order)
        data = self.data
        if isinstance(data, Payload):
            if fh is None:
                raise LegacyPickleError("array data is on disk; pass the open file")
            data = data.read(fh)
        if isinstance(data, str):  # Python 2 str read with encoding=latin1
            data = data.encode("latin1")
        if isinstance(data, Arr):
            data = data.numpy(fh).tobytes()
        need = self.size * dtype.itemsize
        if len(data) != need:
            raise LegacyPickleError(f"array data has {len(data)} bytes, shape {self.shape} of {dtype} needs {need}")
        return np.frombuffer(data, dtype=dtype).reshape(self.shape, order=self.order)


def _reconstruct(subtype, shape, typecode):
    """numpy.core.multiarray._reconstruct: an empty array to be filled by BUILD."""
    if isinstance(subtype, type) and issubclass(subtype, PandasObject):
        return subtype.__new__(subtype)  # pandas < 0.15 Index was an ndarray subclass
    return Arr()


def _frombuffer(buf, dtype, shape, order):
    """numpy.core.numeric._frombuffer (protocol 5 arrays)."""
    return Arr(shape, dtype, order == "F", buf)


def _scalar(dtype, data=None):
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        return data
    if isinstance(data, Payload):
        raise LegacyPickleError("numpy scalar with an oversized payload")
    if isinstance(data, str):
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype)[0].item()


def _dtype(obj, align=False, copy=False):
    return np.dtype(obj, align=bool(align), copy=bool(copy))


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """_codecs.encode: how Python 3 protocol<3 pickles store bytes (latin1-decoded text)."""
    if isinstance(obj, Payload):
        if obj.codec != "utf8" or encoding.replace("-", "").lower() not in ("latin1", "latin", "iso88591"):
            raise LegacyPickleError(f"cannot defer _codecs.encode(..., {encoding!r})")
        return Payload(obj.offset, obj.length, "utf8latin1")
    return codecs.encode(obj, encoding, errors)


# --------------------------------------------------------------------------------------------
# pandas stand-ins: plain objects that keep their pickled state


class PandasObject:
    pandas_name = "object"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class PandasFrame(PandasObject):
    """DataFrame: state is NDFrame's dict {'_data' or '_mgr': BlockManager, '_typ', ...}."""

    @property
    def manager(self):
        state = self.state
        if isinstance(state, dict):
            for key in ("_mgr", "_data"):
                if key in state:
                    return state[key]
        raise LegacyPickleError(f"DataFrame state without a block manager ({type(state).__name__})")


class PandasManager(PandasObject):
    """BlockManager: state (axes, block_values, block_items, {'0.14.1': {axes, blocks}})."""


class PandasBlock(PandasObject):
    """A block pickled as an object (some versions): values + placement."""

    def __setstate__(self, state):
        self.state = state
        if isinstance(state, dict):
            self.args = (state.get("values"), state.get("mgr_locs"))


class PandasPlacement(PandasObject):
    """pandas._libs.internals.BlockPlacement(indexer)."""


class PandasIndex(PandasObject):
    """Index of any kind: `values` (list) or a RangeIndex `range`."""

    def from_dict(self, d: dict) -> PandasIndex:
        self.state = d
        return self

    def length(self, fh=None) -> int:
        return len(self.values(fh))

    def values(self, fh=None) -> list | range:
        state = self.state
        if isinstance(state, dict):
            if "start" in state or "stop" in state:
                return range(int(state.get("start") or 0), int(state["stop"]), int(state.get("step") or 1))
            data = state.get("data")
        elif isinstance(state, tuple) and state and isinstance(state[0], tuple):
            # pandas < 0.15: (ndarray state, own state); the ndarray part is (ver, shape, dtype, F, data)
            arr = Arr()
            arr.__setstate__(state[0])
            data = arr
        else:
            data = state
        if isinstance(data, Arr):
            return list(data.numpy(fh).ravel(order="K").tolist()) if not data.is_object else data.items()
        if isinstance(data, (list, tuple)):
            return list(data)
        if data is None and self.args:
            return list(range(int(self.args[0]))) if isinstance(self.args[0], int) else []
        raise LegacyPickleError(f"index state of type {type(data).__name__}")


def _new_index(cls, d=None):
    if not (isinstance(cls, type) and issubclass(cls, PandasIndex)):
        cls = PandasIndex
    return cls.__new__(cls).from_dict(d if isinstance(d, dict) else {"data": d})


def _new_block(values=None, placement=None, *args, **kwargs):
    block = PandasBlock.__new__(PandasBlock)
    block.args = (values, kwargs.get("placement", placement))
    return block


def _pandas_class(name: str) -> type:
    if name in ("DataFrame",):
        return PandasFrame
    if name.endswith("Manager"):
        return PandasManager
    if name.endswith("Index"):
        return type(name, (PandasIndex,), {"pandas_name": name})
    if name.endswith("Block"):
        return PandasBlock
    if name == "BlockPlacement":
        return PandasPlacement
    return type(name, (PandasObject,), {"pandas_name": name})


_PANDAS_FUNCS = {"_new_Index": _new_index, "new_block": _new_block, "make_block": _new_block,
                 "_unpickle_block": _new_block, "new_block_2d": _new_block}
_NUMPY = {"_reconstruct": _reconstruct, "ndarray": Arr, "dtype": _dtype, "_frombuffer": _frombuffer,
          "scalar": _scalar}
_NUMPY_SCALAR_TYPES = {"bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                       "float16", "float32", "float64", "object_", "str_", "bytes_"}
_BUILTINS = {"object": object, "slice": slice, "set": set, "frozenset": frozenset, "list": list, "dict": dict,
             "tuple": tuple, "complex": complex, "bytearray": bytearray, "int": int, "float": float,
             "str": str, "unicode": str, "bytes": bytes, "bool": bool, "range": range, "xrange": range}


def _copyreg_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, (PandasObject, Arr)):
        return cls.__new__(cls)
    raise LegacyPickleError(f"copy_reg._reconstructor of {cls!r} is not allowed")


# --------------------------------------------------------------------------------------------
# memo pre-scan: which memo slots are ever read back


_FIXED_ARG = {pickle.BININT[0]: 4, pickle.BININT1[0]: 1, pickle.BININT2[0]: 2, pickle.BINFLOAT[0]: 8,
              pickle.BINGET[0]: 1, pickle.LONG_BINGET[0]: 4, pickle.BINPUT[0]: 1, pickle.LONG_BINPUT[0]: 4,
              pickle.EXT1[0]: 1, pickle.EXT2[0]: 2, pickle.EXT4[0]: 4, pickle.PROTO[0]: 1, pickle.FRAME[0]: 8}
_COUNTED_ARG = {pickle.SHORT_BINSTRING[0]: "<B", pickle.BINSTRING[0]: "<i", pickle.SHORT_BINBYTES[0]: "<B",
                pickle.BINBYTES[0]: "<I", pickle.BINBYTES8[0]: "<Q", pickle.SHORT_BINUNICODE[0]: "<B",
                pickle.BINUNICODE[0]: "<I", pickle.BINUNICODE8[0]: "<Q", pickle.BYTEARRAY8[0]: "<Q",
                pickle.LONG1[0]: "<B", pickle.LONG4[0]: "<i"}
_COUNTED_SIZE = {op: {"<B": 1, "<i": 4, "<I": 4, "<Q": 8}[fmt] for op, fmt in _COUNTED_ARG.items()}
_LINE_ARGS = {pickle.INT[0]: 1, pickle.LONG[0]: 1, pickle.FLOAT[0]: 1, pickle.STRING[0]: 1, pickle.UNICODE[0]: 1,
              pickle.GET[0]: 1, pickle.PUT[0]: 1, pickle.PERSID[0]: 1, pickle.GLOBAL[0]: 2, pickle.INST[0]: 2}
_NO_ARG = {op[0] for op in (
    pickle.MARK, pickle.STOP, pickle.POP, pickle.POP_MARK, pickle.DUP, pickle.NONE, pickle.REDUCE, pickle.APPEND,
    pickle.BUILD, pickle.DICT, pickle.EMPTY_DICT, pickle.APPENDS, pickle.LIST, pickle.EMPTY_LIST, pickle.OBJ,
    pickle.SETITEM, pickle.TUPLE, pickle.EMPTY_TUPLE, pickle.SETITEMS, pickle.NEWOBJ, pickle.TUPLE1, pickle.TUPLE2,
    pickle.TUPLE3, pickle.NEWTRUE, pickle.NEWFALSE, pickle.BINPERSID, pickle.EMPTY_SET, pickle.ADDITEMS,
    pickle.FROZENSET, pickle.NEWOBJ_EX, pickle.STACK_GLOBAL, pickle.MEMOIZE, pickle.NEXT_BUFFER,
    pickle.READONLY_BUFFER)}


def memo_reads(fh, chunk: int = 1 << 20) -> set[int]:
    """The memo keys a pickle ever GETs, found by walking its opcodes without building anything.

    Python 2's cPickle memoizes every object it writes; an unpickler that keeps them all holds the
    whole object graph twice. With this set, `LegacyUnpickler` stores only the slots read back.
    Payloads are skipped with seek; memory stays at one chunk.
    """
    gets: set[int] = set()
    buf, pos = b"", 0
    binget, long_binget, get = pickle.BINGET[0], pickle.LONG_BINGET[0], pickle.GET[0]
    stop = pickle.STOP[0]
    try:
        while True:
            if len(buf) - pos < 16:
                buf, pos = buf[pos:] + fh.read(chunk), 0
                if not buf:
                    raise EOFError("pickle ends before STOP")
            op = buf[pos]
            pos += 1
            if op in _FIXED_ARG:
                if op == binget:
                    gets.add(buf[pos])
                elif op == long_binget:
                    gets.add(unpack("<I", buf[pos:pos + 4])[0])
                pos += _FIXED_ARG[op]
            elif op in _COUNTED_ARG:
                size = _COUNTED_SIZE[op]
                n = unpack(_COUNTED_ARG[op], buf[pos:pos + size])[0]
                if n < 0:
                    raise ValueError("negative byte count")
                pos += size + n
                if pos > len(buf):
                    fh.seek(pos - len(buf), io.SEEK_CUR)
                    buf, pos = b"", 0
            elif op in _LINE_ARGS:
                for _ in range(_LINE_ARGS[op]):
                    end = buf.find(b"\n", pos)
                    while end < 0:
                        more = fh.read(chunk)
                        if not more:
                            raise EOFError("pickle ends inside a text argument")
                        buf, pos = buf[pos:] + more, 0
                        end = buf.find(b"\n", pos)
                    if op == get:
                        gets.add(int(buf[pos:end]))
                    pos = end + 1
            elif op == stop:
                return gets
            elif op not in _NO_ARG:
                raise ValueError(f"unknown opcode 0x{op:02x} at byte {fh.tell() - len(buf) + pos - 1}")
    except (EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise LegacyPickleError(f"not a readable pickle ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------
# the unpickler


class LegacyUnpickler(pickle._Unpickler):
    """Pure-Python unpickler: allow-listed stand-in globals, big byte strings left on disk."""

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, fh, inline_limit: int = INLINE_LIMIT, memo_keep: set[int] | None = None):
        super().__init__(fh, encoding="latin1")
        self._fh = fh
        self._keep = memo_keep  # None: keep every memo slot
        self._memo_next = 0
        self._strings: dict[str, str] = {}
        self._frame_offset = 0
        self.inline_limit = inline_limit
        self._classes: dict[tuple[str, str], Any] = {}

    # -- globals ---------------------------------------------------------------------------
    def find_class(self, module: str, name: str):
        key = (module, name)
        if key not in self._classes:
            self._classes[key] = self._lookup(module, name)
        return self._classes[key]

    def _lookup(self, module: str, name: str):
        top = module.split(".")[0]
        if top == "numpy":
            if name in _NUMPY:
                return _NUMPY[name]
            if module == "numpy" and name in _NUMPY_SCALAR_TYPES:
                return getattr(np, name)
        elif top == "pandas":
            if name in _PANDAS_FUNCS:
                return _PANDAS_FUNCS[name]
            if name[:1].isupper():
                return _pandas_class(name)
        elif module in ("__builtin__", "builtins") and name in _BUILTINS:
            return _BUILTINS[name]
        elif module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _copyreg_reconstructor
        elif module == "_codecs" and name == "encode":
            return _codecs_encode
        elif module == "collections" and name == "OrderedDict":
            return dict
        raise LegacyPickleError(f"global {module}.{name} is not allowed in a DataFrame pickle")

    def _decode_string(self, value):
        text = super()._decode_string(value)
        if len(text) <= 32:  # lot names and labels repeat a lot: one object per distinct value
            text = self._strings.setdefault(text, text)
        return text

    # -- payloads ----------------------------------------------------------------------------
    def _defer(self, n: int, codec: str) -> Payload | None:
        if n < self.inline_limit:
            return None
        frame = self._unframer.current_frame
        if frame is not None:
            start = frame.tell()
            if start + n > len(frame.getbuffer()):
                raise pickle.UnpicklingError("pickle exhausted before end of frame")
            frame.seek(n, io.SEEK_CUR)
            return Payload(self._frame_offset + start, n, codec)
        start = self._fh.tell()
        self._fh.seek(n, io.SEEK_CUR)
        return Payload(start, n, codec)

    def _push_bytes(self, n: int, codec: str, decode) -> None:
        deferred = self._defer(n, codec)
        self.append(deferred if deferred is not None else decode(self.read(n)))

    def load_binstring(self):
        n, = unpack("<i", self.read(4))
        if n < 0:
            raise pickle.UnpicklingError("BINSTRING pickle has negative byte count")
        self._push_bytes(n, "raw", self._decode_string)

    def load_short_binstring(self):
        self._push_bytes(self.read(1)[0], "raw", self._decode_string)

    def load_binbytes(self):
        self._push_bytes(unpack("<I", self.read(4))[0], "raw", bytes)

    def load_short_binbytes(self):
        self._push_bytes(self.read(1)[0], "raw", bytes)

    def load_binbytes8(self):
        self._push_bytes(unpack("<Q", self.read(8))[0], "raw", bytes)

    def load_bytearray8(self):
        self._push_bytes(unpack("<Q", self.read(8))[0], "raw", bytearray)

    def load_binunicode(self):
        self._push_bytes(unpack("<I", self.read(4))[0], "utf8", lambda b: str(b, "utf-8", "surrogatepass"))

    def load_binunicode8(self):
        self._push_bytes(unpack("<Q", self.read(8))[0], "utf8", lambda b: str(b, "utf-8", "surrogatepass"))

    # -- memo: only the slots that are read back (see memo_reads) -------------------------------
    def _put(self, i: int) -> None:
        if i < 0:
            raise ValueError("negative PUT argument")
        self._memo_next += 1
        if self._keep is None or i in self._keep:
            self.memo[i] = self.stack[-1]

    def load_put(self):
        self._put(int(self.readline()[:-1]))

    def load_binput(self):
        self._put(self.read(1)[0])

    def load_long_binput(self):
        self._put(unpack("<I", self.read(4))[0])

    def load_memoize(self):
        self._put(self._memo_next)

    def load_frame(self):
        size, = unpack("<Q", self.read(8))
        if size > sys.maxsize:
            raise ValueError(f"frame size > sys.maxsize: {size}")
        self._frame_offset = self._fh.tell()
        self._unframer.load_frame(size)

    for _op, _fn in ((pickle.BINSTRING, load_binstring), (pickle.SHORT_BINSTRING, load_short_binstring),
                     (pickle.BINBYTES, load_binbytes), (pickle.SHORT_BINBYTES, load_short_binbytes),
                     (pickle.BINBYTES8, load_binbytes8), (pickle.BYTEARRAY8, load_bytearray8),
                     (pickle.BINUNICODE, load_binunicode), (pickle.BINUNICODE8, load_binunicode8),
                     (pickle.FRAME, load_frame), (pickle.PUT, load_put), (pickle.BINPUT, load_binput),
                     (pickle.LONG_BINPUT, load_long_binput), (pickle.MEMOIZE, load_memoize)):
        dispatch[_op[0]] = _fn
    del _op, _fn


# --------------------------------------------------------------------------------------------
# the table view


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


# --------------------------------------------------------------------------------------------
# writer (fixtures, benchmarks): Python 2 + pandas 0.18 style, without pandas


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


__all__ = ["Arr", "Column", "LegacyPickleError", "LegacyUnpickler", "Payload", "Table", "read_frame", "unwrap",
           "write_legacy_frame"]
