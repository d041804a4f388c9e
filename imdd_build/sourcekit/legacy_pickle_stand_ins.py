"""Stand-ins for the globals a legacy DataFrame pickle names (helpers of `legacy_pickle`).

Holds `LegacyPickleError`, `Payload` (a byte string left on disk), the numpy stand-ins (`Arr` and
the `_reconstruct`/`_frombuffer`/scalar/dtype/`_codecs.encode` functions), the pandas stand-ins
(plain objects that keep their pickled state) and the allow-list tables `LegacyUnpickler` maps
globals through.
"""

from __future__ import annotations

import codecs

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
