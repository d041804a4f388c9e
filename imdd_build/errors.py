"""The run-level error: a failure of the whole command run (bad option, unusable input, missing extra).

Library code raises `RunError` where the user must change something before rerunning; the CLI turns it
(and the sources' `RootError`, and a missing file) into one `error: ...` line and exit code 2. Anything
else is a bug and keeps its traceback. `RunError` is a `ValueError`, so callers that already catch
`ValueError` around library calls keep working.
"""

from __future__ import annotations


class RunError(ValueError):
    """A failure of the whole run: one line naming the file, option or field and the reason; exit 2."""


def need_extra(module: str, extra: str = "publish") -> None:
    """A missing optional dependency is a run-level error naming the extra that installs it."""
    try:
        __import__(module)
    except ImportError:
        raise RunError(f"{module} is not installed: pip install 'imdd[{extra}]'") from None
