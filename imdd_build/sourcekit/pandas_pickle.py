"""DataFrame pickles written by pandas 2.x or later, read through pandas itself when it is installed.

`legacy_pickle` reads the original `LSWMD.pkl` (Python 2, pandas ~0.18) without pandas. A newer
pandas pickles the same frame differently (object blocks through `pandas._libs.internals.
_unpickle_block`, a manager without state, Arrow-backed strings in pandas 3), which only pandas can
rebuild. `read_any_frame()` tries the pandas-free reader first and falls back to pandas; without
pandas it refuses with a message that says what to install.

Loading a pickle runs the callables it names, so the pandas path uses a restricted unpickler (the
pattern of the `pickle` documentation): only the classes and functions a DataFrame pickle needs
(pandas' internals, arrays and indexes, numpy's array reconstruction, pyarrow's array restore and
a few builtins) are resolved; any other global is refused and nothing of it runs. The whole frame
is loaded into memory: fine for re-saved subsets, while the 2 GB original takes the streaming path.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

from .legacy_pickle import Column, LegacyPickleError, Table, read_frame

# module -> allowed names ("*": any class of that module; functions must be listed by name)
_ALLOWED: dict[str, set[str]] = {
    "builtins": {"slice", "bytearray", "bytes", "complex", "range", "frozenset", "set", "object", "tuple",
                 "list", "dict", "int", "float", "str", "bool"},
    "__builtin__": {"slice", "bytearray", "bytes", "complex", "frozenset", "set", "object"},
    "copyreg": {"_reconstructor"},
    "_codecs": {"encode"},
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy.dtypes": {"*"},
    "pandas": {"DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "StringDtype", "CategoricalDtype",
               "Categorical", "Timestamp", "Timedelta", "Interval", "Period"},
    "pandas._libs.internals": {"_unpickle_block", "BlockPlacement"},
    "pandas.core.indexes.base": {"_new_Index", "Index"},
    "pandas.core.internals.blocks": {"new_block", "*"},
    "pandas.core.internals.managers": {"*"},
    "pyarrow.lib": {"_restore_array", "py_buffer", "type_for_alias", "schema", "field", "string", "large_string",
                    "binary", "null", "bool_", "int64", "float64", "*"},
}
# module prefixes whose classes (never functions) may be built: pandas' own array, index and dtype types
_CLASS_PREFIXES = ("pandas.arrays", "pandas.core.arrays", "pandas.core.indexes", "pandas.core.dtypes",
                   "pandas.core.frame", "pandas.core.series", "pandas._libs.tslibs", "pandas._libs.arrays",
                   "pandas._libs.interval", "pandas.core.internals")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = _ALLOWED.get(module, set())
        if name in allowed:
            return super().find_class(module, name)
        if "*" in allowed or module.startswith(_CLASS_PREFIXES):
            obj = getattr(importlib.import_module(module), name, None)
            if isinstance(obj, type) and not name.startswith("_"):
                return obj
        raise LegacyPickleError(f"global {module}.{name} is not allowed in a DataFrame pickle")


def load_frame(path: Path):
    """The DataFrame in `path`, built by pandas through the restricted unpickler."""
    import pandas as pd

    with Path(path).open("rb") as fh:
        try:
            obj = _RestrictedUnpickler(fh).load()
        except LegacyPickleError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything pandas/numpy raise on a bad pickle
            raise LegacyPickleError(f"pandas could not read it ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, pd.DataFrame):
        raise LegacyPickleError(f"the pickle holds a {type(obj).__name__}, not a pandas DataFrame")
    return obj


def frame_table(path: Path, frame) -> Table:
    """The `Table` view of a loaded DataFrame (every cell in memory)."""
    columns = {str(name): Column(str(name), list(frame[name]), None) for name in frame.columns}
    return Table(Path(path), len(frame), columns)


def read_any_frame(path: Path) -> Table:
    """The frame of any pandas version: pandas-free for the original pickles, else through pandas."""
    try:
        return read_frame(path)
    except LegacyPickleError as legacy:
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise LegacyPickleError(
                f"{legacy}; if pandas 2.x or later wrote this pickle, install pandas to read it "
                "(pip install pandas), or give the original LSWMD.pkl") from None
        try:
            frame = load_frame(path)
        except LegacyPickleError as modern:
            if str(modern) == str(legacy):  # refused by both allow-lists: say it once
                raise
            raise LegacyPickleError(f"{legacy}; read through pandas: {modern}") from None
        return frame_table(path, frame)
