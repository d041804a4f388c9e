"""bench/gpu_check.sh: the prepared GPU check runs on the CPU at tiny sizes (--smoke) and prints one JSON object
with every key the GPU run fills (no GPU is needed to prove the script itself works)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_smoke_run_prints_one_json_object_with_every_key(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "IMDD_GPU_CHECK_SMOKE": "1"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--work", str(tmp_path / "work")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["smoke"] is True and result["gpu"] is False and result["errors"] == {}, result["errors"]
    for name in gpu_check.SECTIONS:
        assert result[name] is not None, name
        missing = [key for key in gpu_check.SECTION_KEYS[name] if key not in result[name]]
        assert not missing, (name, missing)
    for name in ("stage1_eager", "stage1_compiled"):
        assert result[name]["imdd_img_s"] > 0 and result[name]["diffusers_img_s"] > 0
    assert result["precompute"]["img_s"] > 0 and result["stage2_train"]["samples_s"] > 0
    assert result["stage2_predict"]["images_s"] > 0
    assert result["stage1_eager"]["batch"] < result["stage1_compiled"]["batch"]
    assert set(result["verdict"]) == {"stage1_img_s_target_met", "stage1_beats_compiled_diffusers",
                                      "precompute_target_met"}
