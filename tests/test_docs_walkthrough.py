"""The Getting-started walkthrough runs as written: every ```python and ```bash block of a page that
starts with `<!-- docs-test: walkthrough -->`, in order, in one fresh empty folder, with this
checkout's `imdd-build`, `imdd-models` and `python` on the PATH (the CPU `tiny` presets: a few CPU minutes).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from docs_blocks import REPO, is_walkthrough, pages, runnable, shell_env

WALKTHROUGHS = [p for p in pages() if is_walkthrough(p)]


def test_there_is_a_walkthrough_and_it_covers_the_whole_pipeline():
    assert WALKTHROUGHS
    code = "".join(b.code for p in WALKTHROUGHS for b in runnable(p))
    for step in ("imdd-build ingest folder", "imdd-build caption", "imdd-build shard", "load_dataset(",
                 "components --preset tiny", "train-diffusion --config tiny", "imdd-models generate",
                 "imdd-models inpaint-defect", "train-seg", "--config tiny", "imdd-models predict",
                 "imdd-models evaluate"):
        assert step in code, f"the walkthrough lacks {step!r}"


@pytest.mark.parametrize("page", WALKTHROUGHS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_walkthrough_runs_in_order(page: Path, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    env = shell_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    started = time.monotonic()
    for block in runnable(page):
        assert not block.skip, f"{block.where}: a walkthrough block may not be skipped ({block.skip})"
        argv = [sys.executable, "-c", block.code] if block.lang == "python" else ["bash", "-euo", "pipefail", "-c",
                                                                                    block.code]
        run = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{block.where} failed:\n{block.code}\n{run.stdout[-1500:]}\n{run.stderr[-3000:]}"
    # what the page promises is there
    for path in ("imdd-1m/manifest.json", "stage1/model_index.json", "samples/grid.png", "synth/inpainted.png",
                 "seg", "preds/predictions.jsonl", "preds-photos/predictions.jsonl", "results.md"):
        assert (work / path).exists(), path
    print(f"{page.name}: {time.monotonic() - started:.0f} s")
