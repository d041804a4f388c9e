"""Output folders a command writes into: a non-empty folder is taken only when everything in it is the command's
own (its files, their `NAME.tmp`/`NAME.new`/`NAME.old` while being replaced), so a rerun after a crash or an
interrupt is accepted and nothing is ever written beside a user's unrelated files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from imdd_build.errors import RunError


def is_own(name: str, own: Iterable[str]) -> bool:
    """`name` is one of `own`, or one of them being written (`NAME.tmp`, `.NAME.tmp`, `NAME.new`, ...)."""
    base = name[1:] if name.startswith(".") else name
    return any(base == o or base.startswith(o + ".") for o in own)


def refuse_foreign(folder: Path, own: Iterable[str], what: str, flag: str = "--out") -> None:
    """RunError when `folder` holds anything that is not one of `own` (names of the command's files/folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    own = set(own)
    foreign = sorted(p.name for p in folder.iterdir() if not is_own(p.name, own))
    if foreign:
        raise RunError(f"{flag} {folder}: not empty and not {what} (it holds {foreign[0]!r}"
                       + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "") + "); choose a new or empty "
                       "folder")
