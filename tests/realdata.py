"""Where the real-data samples live: `IMDD_REALDATA`, else `../shared/realdata` beside the repository.

"Beside the repository" is tried for the checkout itself and, for a `git worktree`, for the main
checkout too (worktrees live elsewhere but share its `.git`). Tests that need a sample skip with a
reason naming the folder they looked in; `-rs` in pytest's addopts prints those reasons.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _main_checkout(repo: Path) -> Path | None:
    """The main checkout of a git worktree (None outside git)."""
    try:
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if common.returncode != 0 or not common.stdout.strip():
        return None
    return Path(common.stdout.strip()).parent


@lru_cache(maxsize=1)
def candidates() -> tuple[Path, ...]:
    """The folders searched, in order."""
    if os.environ.get("IMDD_REALDATA"):
        return (Path(os.environ["IMDD_REALDATA"]).expanduser().resolve(),)
    found = [REPO.parent / "shared" / "realdata"]
    main = _main_checkout(REPO)
    if main is not None and main.resolve() != REPO:
        found.append(main.parent / "shared" / "realdata")
    return tuple(found)


def realdata(name: str) -> Path | None:
    """`<realdata>/<name>` from the first candidate folder that holds it, else None."""
    return next((root / name for root in candidates() if (root / name).is_dir()), None)


def require(name: str):
    """A skip marker for tests that need the real `name` sample folder."""
    where = " or ".join(str(root / name) for root in candidates())
    return pytest.mark.skipif(realdata(name) is None, reason=f"real data not found at {where} (set IMDD_REALDATA)")
