"""Stage 2 on stage 1's real output: the folder `imdd-models train-diffusion` writes is a `train-seg --diffusion`.

The stage-2 tests build their stage-1 folder themselves (tests/seg_fixtures.py); this one takes the trained tiny
run of tests/models/conftest.py (`trained_run`) and trains two steps on an `imdd-build demo` WebDataset tar
(masks and class masks read from its members).
"""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from imdd_models.cli import app


def test_train_seg_takes_the_train_diffusion_output_folder(trained_run, demo_shards, tmp_path):
    run, _ = trained_run
    tar = demo_shards / "webdataset" / "test-000000.tar"
    out = tmp_path / "seg"
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(run), "--data", str(tar), "--split", "test",
                                      "--config", "tiny", "--out", str(out), "--classes", "hole,stain",
                                      "--max-steps", "2", "--json"])
    assert result.exit_code == 0, (result.stdout[-2000:], result.stderr[-2000:], result.exception)
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert s["steps"] == 2 and s["classes"] == ["hole", "stain"] and s["bad"] == 0
    assert s["samples"] == 6 + 6 + 6 and s["normal"] == 6  # hole, stain and the normal records of the split
    # stage 1 saved its trained implicit captioner: stage 2 conditions on it, not on the empty caption
    assert s["conditioning"] == "implicit captioner"
    assert math.isfinite(s["loss_start"]) and math.isfinite(s["loss_end"])
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "seg_config.json").read_text())["features"]["diffusion"] == str(run.resolve())
