"""`--help` of every command of both CLIs is fast: building it imports no torch, diffusers, transformers or
datasets (they are imported in the command bodies, after the arguments are parsed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "diffusers", "transformers", "datasets", "accelerate", "torchmetrics")

_SCRIPT = f"""
import contextlib, io, json, sys
import typer
from imdd_models.cli import app as models_app
from imdd_build.cli import app as build_app

names = []
def walk(cmd, ctx):
    with contextlib.redirect_stdout(io.StringIO()):
        cmd.get_help(ctx)
    names.append(ctx.command_path)
    if hasattr(cmd, "list_commands"):  # a group (typer >= 0.2x has its own click)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            walk(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))

for app, name in ((models_app, "imdd-models"), (build_app, "imdd-build")):
    root = typer.main.get_command(app)
    walk(root, root.make_context(name, [], resilient_parsing=True))
print(json.dumps({{"commands": names, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_help_of_every_command_imports_no_heavy_library():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    commands = result["commands"]
    # every command of both CLIs had its help built, sub-commands included
    for name in ("imdd-models train-diffusion", "imdd-models evaluate", "imdd-models predict",
                 "imdd-models inpaint-defect", "imdd-build ingest", "imdd-build review"):
        assert any(c == name or c.startswith(name + " ") for c in commands), (name, commands)
    assert len(commands) > 20
    assert result["heavy"] == [], f"building --help imported {result['heavy']}"


def test_help_subprocess_prints_usage_without_torch():
    """The real entry point: `python -m imdd_models train-diffusion --help` with torch imports forbidden."""
    blocker = ("import sys\n"
               "class B:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, B())\n"
               "import runpy; sys.argv = ['imdd-models', 'train-diffusion', '--help']\n"
               "runpy.run_module('imdd_models', run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--max-steps" in out.stdout


def _option_help(command: str, option: str) -> str:
    import typer

    from imdd_models.cli import app
    group = typer.main.get_command(app)
    cmd = group.get_command(group.make_context("imdd-models", [], resilient_parsing=True), command)
    return next(p.help or "" for p in cmd.params if option in getattr(p, "opts", ()))


def test_help_texts_say_what_a_user_needs():
    assert "same images" in _option_help("generate", "--seed")
    assert "offline" in _option_help("evaluate-generation", "--feature-weights")
    assert "probs" in _option_help("evaluate-generation", "--feature-output")
    assert "meta.json" in _option_help("evaluate", "--split")
