"""precompute: deterministic latent shards, and a SIGKILLed run that resumes without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from models.conftest import invoke
from imdd_models.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "latents").glob("*.parquet"))}


def test_latent_shards_hold_every_record_once(demo_latents):
    keys = [k for p in sorted((demo_latents / "latents").glob("*.parquet"))
            for k in pq.read_table(p, columns=["key"]).column(0).to_pylist()]
    assert len(keys) == len(set(keys)) == 42
    row = pq.read_table(sorted((demo_latents / "latents").glob("*.parquet"))[0]).to_pylist()[0]
    assert row["latent_shape"] == [4, 8, 8] and len(row["latent"]) == 4 * 8 * 8 * 2  # fp16
    assert len(row["latent_flip"]) == len(row["latent"]) and len(row["image_embed"]) == 512 * 2
    assert len(row["input_ids"]) == 77 and row["input_ids"][0] == 49406


def test_killed_precompute_resumes_without_duplicates(demo_shards, tiny_components, demo_latents, tmp_path):
    out = tmp_path / "latents"
    cmd = [sys.executable, "-m", "imdd_models", "precompute", "--data", str(demo_shards), "--components",
           str(tiny_components), "--out", str(out), "--shard-size", "8", "--batch-size", "8", "--flip", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and len(list((out / "latents").glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((out / "latents").glob("*.parquet")))
    assert 2 <= written < 6, written  # killed part-way (6 shards in all)

    summary = invoke(app, "precompute", "--data", str(demo_shards), "--components", str(tiny_components),
                     "--out", str(out), "--shard-size", "8", "--batch-size", "8", "--flip")
    assert summary["samples"] == 42 and summary["shards"] == 6 and summary["resumed_from_shard"] >= 2
    assert _contents(out) == _contents(demo_latents)  # same bytes as an uninterrupted run: no duplicates


def test_changed_options_are_refused(demo_shards, tiny_components, demo_latents):
    result = invoke(app, "precompute", "--data", str(demo_shards), "--components", str(tiny_components),
                    "--out", str(demo_latents), "--shard-size", "4", expect=2)
    assert "other options (shard_size: 8 -> 4; flip: True -> False)" in result["error"], result  # each named


def test_the_same_data_folder_spelled_another_way_resumes(demo_shards, tiny_components, demo_latents, monkeypatch):
    """A relative path, or a trailing slash, is the same folder: the finished latents are kept, not refused."""
    monkeypatch.chdir(demo_shards.parent)
    for spelling in (demo_shards.name, f"{demo_shards.name}/"):
        summary = invoke(app, "precompute", "--data", spelling, "--components", str(tiny_components), "--out",
                         str(demo_latents), "--shard-size", "8", "--batch-size", "8", "--flip")
        assert summary["samples"] == 42 and summary["shards"] == 6
