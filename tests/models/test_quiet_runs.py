"""Quiet runs: a normal `imdd-models` run prints no third-party warning. `datasets.load_dataset` on a folder whose
README.md has no YAML block (a plain README beside WebDataset tars) made huggingface_hub log "Repo card metadata
block was not found" once per load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from models.eval_helpers import oracle_lines, records, write_folder

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_on_a_plain_readme_folder_is_quiet(demo_shards, tmp_path):
    folder = tmp_path / "tars"
    folder.mkdir()
    for tar in (demo_shards / "webdataset").glob("test-*.tar"):
        shutil.copy(tar, folder / tar.name)
    (folder / "README.md").write_text("# Our defect images\n\nNo metadata block here.\n")
    lines, maps = oracle_lines(records(demo_shards))
    predictions = write_folder(tmp_path / "p", lines, maps)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "imdd_models", "evaluate", "--predictions", str(predictions),
                          "--data", str(folder), "--no-breakdown", "--json"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"records": 24' in out.stdout
    messages = [line for line in out.stderr.splitlines() if line.strip() and "━" not in line]
    assert not [m for m in messages if "Repo card" in m or "warn" in m.lower()], messages
