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


# Every imdd-models command, run as a user runs it on tiny data, in one fresh process (a marker line on stderr
# before each): what it prints on stderr is its progress bar and its own messages, nothing from transformers,
# diffusers, datasets, huggingface_hub, accelerate or torch (UserWarnings, FutureWarnings, notices).
_DRIVER = """
import json, sys
from imdd_models.cli import app
for args in json.loads(sys.argv[1]):
    print("=== " + args[0], file=sys.stderr, flush=True)
    try:
        app([*args, "--json"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
"""

# Our own stderr lines of a normal run (anything else is noise).
_OWN = {"generate": ("generating ...",), "inpaint-defect": ("inpainting ...",),
        "evaluate": ("split: test (recorded by predict in meta.json)",),
        "evaluate-generation": ("warning: 2 samples <= feature dimension", "warning: 24 real / 2 generated"),
        "demo": ("components", "precompute", "train-diffusion", "generate", "inpaint-defect")}


def test_every_command_is_quiet(demo_shards, tmp_path):
    import json

    import torch
    from PIL import Image

    from models.test_eval_generation import TinyNet
    from seg_fixtures import write_seg_shards
    torch.jit.save(torch.jit.script(TinyNet()), str(tmp_path / "tiny.pt"))
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "image.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 40, 40))
    mask.save(tmp_path / "mask.png")
    seg_train = write_seg_shards(tmp_path / "seg-train", per_class=2, classes=("scratch", "hole"))
    seg_test = write_seg_shards(tmp_path / "seg-test", per_class=1, seed=1, classes=("scratch", "hole"), split="test")
    t, shards = tmp_path, str(demo_shards)
    commands = [
        ["components", "--preset", "tiny", "--out", f"{t}/c"],
        ["precompute", "--data", shards, "--components", f"{t}/c", "--out", f"{t}/lat"],
        ["train-diffusion", "--data", f"{t}/lat", "--components", f"{t}/c", "--out", f"{t}/run", "--max-steps", "2"],
        ["export", "--run", f"{t}/run", "--out", f"{t}/export"],
        ["generate", "--model", f"{t}/run", "--prompt", "a scratch", "--n", "2", "--steps", "2", "--out", f"{t}/gen"],
        ["inpaint-defect", "--model", f"{t}/run", "--image", f"{t}/image.png", "--mask", f"{t}/mask.png",
         "--prompt", "a scratch", "--steps", "2", "--out", f"{t}/inpaint"],
        ["train-seg", "--diffusion", f"{t}/run", "--data", str(seg_train), "--config", "tiny", "--out", f"{t}/seg",
         "--max-steps", "2"],
        ["predict", "--model", f"{t}/seg", "--classes", "scratch,hole", "--data", str(seg_test), "--split", "test",
         "--out", f"{t}/pred"],
        ["evaluate", "--predictions", f"{t}/pred", "--data", str(seg_test)],
        ["evaluate-generation", "--real", shards, "--generated", f"{t}/gen", "--feature-weights", f"{t}/tiny.pt",
         "--image-size", "32", "--split", "test"],
        ["demo", "--steps", "2", "--shards", shards, "--out", f"{t}/demo"],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"}
    for name in ("PYTHONWARNINGS", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_VERBOSITY"):
        env.pop(name, None)  # the defaults a user has
    out = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(commands)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(out.stdout.strip().splitlines()) >= len(commands)  # every command printed its JSON line
    noise, command = [], None
    for line in out.stderr.splitlines():
        if line.startswith("=== "):
            command = line[4:]
        elif line.strip() and "━" not in line and not line.strip().startswith(_OWN.get(command, ("\0",))):
            noise.append(f"{command}: {line}")
    assert not noise, noise
