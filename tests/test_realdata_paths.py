"""The real-data tests find `../shared/realdata` from any checkout (a worktree too) or `IMDD_REALDATA`."""

from __future__ import annotations

import subprocess
import re
from pathlib import Path

import realdata as rd

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]


def test_imdd_realdata_wins(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "deeppcb").mkdir()
    monkeypatch.setenv("IMDD_REALDATA", str(tmp_path))
    rd.candidates.cache_clear()
    try:
        assert rd.realdata("deeppcb") == tmp_path / "deeppcb"
        assert rd.realdata("magnetic_tile") is None
        assert rd.require("magnetic_tile").kwargs["reason"] == \
            f"real data not found at {tmp_path / 'magnetic_tile'} (set IMDD_REALDATA)"
    finally:
        monkeypatch.delenv("IMDD_REALDATA")
        rd.candidates.cache_clear()


def test_shared_folder_of_the_main_checkout_is_found_from_a_worktree(tmp_path: Path) -> None:
    main, worktree = tmp_path / "work" / "main", tmp_path / "elsewhere" / "deep" / "wt"
    main.mkdir(parents=True)
    subprocess.run([*GIT, "init", "-q", str(main)], check=True)
    subprocess.run([*GIT, "-C", str(main), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run([*GIT, "-C", str(main), "worktree", "add", "-q", str(worktree)], check=True)
    assert rd._main_checkout(worktree).resolve() == main.resolve()
    assert rd._main_checkout(main).resolve() == main.resolve()
    assert rd._main_checkout(tmp_path / "elsewhere") is None  # not inside any git repository


def test_the_candidates_start_beside_this_checkout() -> None:
    rd.candidates.cache_clear()
    assert rd.candidates()[0] == rd.REPO.parent / "shared" / "realdata"


def test_skips_are_reported_in_the_summary() -> None:
    addopts = re.search(r'^addopts = "([^"]*)"', (rd.REPO / "pyproject.toml").read_text(), re.M)
    assert "-rs" in addopts.group(1).split()
