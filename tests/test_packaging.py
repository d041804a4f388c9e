"""A non-editable install works: the registry, taxonomy and guidelines ship inside the wheel.

The wheel is built from this checkout and unpacked outside it; `imdd-build demo` then runs from a
folder that has no `sources.yaml` or `annotation_guidelines/` anywhere above it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = ("imdd_build/data/sources.yaml", "imdd_build/data/annotation_guidelines/taxonomy.yaml",
        "imdd_build/data/annotation_guidelines/caption_prompt.md",
        "imdd_build/data/annotation_guidelines/caption_style.md",
        "imdd_build/data/annotation_guidelines/reviewer_guide.md")


def _build_wheel(out: Path) -> Path:
    """A wheel built from a clean copy of the checkout (an in-tree build would pack stale build/ files)."""
    src = out / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", ".venv", "__pycache__", ".pytest_cache", "imdd-workspace"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, cwd=out)
    (wheel,) = out.glob("imdd-*.whl")
    return wheel


def test_wheel_carries_the_data_files_and_demo_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert set(DATA) <= names, sorted(set(DATA) - names)
        assert not [n for n in names if "legacy_pickle_writer" in n]  # test code stays out of the product
        # The packaged copies are the checkout's files (one source of truth), not stale twins.
        for name in DATA:
            top = REPO / name.removeprefix("imdd_build/data/")
            assert zf.read(name) == top.read_bytes(), name
        zf.extractall(site)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMDD_")}
    env["PYTHONPATH"] = str(site)
    probe = subprocess.run([sys.executable, "-c", "import imdd_build; print(imdd_build.__file__)"],
                           env=env, cwd=run_dir, capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()).is_relative_to(site)
    result = subprocess.run([sys.executable, "-m", "imdd_build", "--workspace", "ws", "demo", "--workers", "1",
                             "--json"], env=env, cwd=run_dir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["records"] == summary["captioned"] > 0


def test_package_data_is_the_top_level_files() -> None:
    """In a checkout the package-data paths are links to the editable top-level copies."""
    data = REPO / "imdd_build" / "data"
    assert (data / "sources.yaml").resolve() == (REPO / "sources.yaml").resolve()
    assert (data / "annotation_guidelines").resolve() == (REPO / "annotation_guidelines").resolve()
