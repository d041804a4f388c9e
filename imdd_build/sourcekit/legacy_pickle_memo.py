"""Memo pre-scan for legacy pickles (helper of `legacy_pickle`): which memo slots are read back.

`memo_reads()` walks a pickle's opcodes without building anything, seeking past payloads, so
`LegacyUnpickler` can keep only the memo slots that are ever GET.
"""

from __future__ import annotations

import io
import pickle
from struct import unpack

from .legacy_pickle_stand_ins import LegacyPickleError

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
