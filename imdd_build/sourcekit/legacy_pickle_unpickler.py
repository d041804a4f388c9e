"""The restricted, payload-deferring unpickler (helper of `legacy_pickle`).

`LegacyUnpickler` maps an allow-list of globals to the stand-ins of `legacy_pickle_stand_ins`,
leaves big byte strings on disk as `Payload`s (also inside protocol-4 frames) and keeps only the
memo slots `memo_reads()` found to be read back.
"""

from __future__ import annotations

import io
import pickle
import sys
from struct import unpack
from typing import Any, ClassVar

import numpy as np

from .legacy_pickle_stand_ins import (
    _BUILTINS,
    _NUMPY,
    _NUMPY_SCALAR_TYPES,
    _PANDAS_FUNCS,
    INLINE_LIMIT,
    LegacyPickleError,
    Payload,
    _codecs_encode,
    _copyreg_reconstructor,
    _pandas_class,
)


def _decode_utf8(b: bytes) -> str:
    return str(b, "utf-8", "surrogatepass")


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
        self._push_bytes(unpack("<I", self.read(4))[0], "utf8", _decode_utf8)

    def load_binunicode8(self):
        self._push_bytes(unpack("<Q", self.read(8))[0], "utf8", _decode_utf8)

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
