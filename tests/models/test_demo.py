"""`imdd-models demo` end to end on the session's demo shards (few steps; the README runs the default)."""

from __future__ import annotations

from PIL import Image

from models.conftest import invoke
from imdd_models.cli import app


def test_demo_trains_generates_and_inpaints(demo_shards, tmp_path):
    summary = invoke(app, "demo", "--out", str(tmp_path / "demo"), "--shards", str(demo_shards), "--steps", "4")
    assert summary["steps"] == 4 and summary["latents"] == 42
    assert Image.open(summary["grid"]).size == (128, 128)
    painted = Image.open(summary["inpainted"])
    assert painted.size == (512, 512)  # the normal input's own size
    assert summary["inpaint_prompt"].startswith("a ") and "defect on a" in summary["inpaint_prompt"]
