"""`imdd-models demo`: the modelling half on the `imdd-build demo` shards, in a few CPU minutes.

tiny components -> latent precompute -> a short train-diffusion run -> a generated grid -> a defect
inpainted into a normal image with a real defect mask. Each stage's output stays under `out` for a look.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ..data import iter_records
from ..outdir import refuse_foreign
from .generate import generate
from .inpaint import inpaint_defect
from .precompute import precompute
from .train import train_diffusion

STAGES = ("components", "latents", "model", "samples", "inpaint")


def default_shards() -> Path:
    """Where `imdd-build demo` writes (its workspace: $IMDD_WORKSPACE or ./imdd-workspace)."""
    return Path(os.environ.get("IMDD_WORKSPACE", "imdd-workspace")) / "demo-shards"


def build_shards(shards: Path) -> None:
    """Run `imdd-build demo` into the folder above `shards` (it does not download anything)."""
    cmd = [sys.executable, "-m", "imdd_build", "--workspace", str(shards.parent), "demo", "--out", str(shards),
           "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"imdd-build demo failed: {done.stderr.strip().splitlines()[-1:]}")


def _inpaint_inputs(shards: Path, out: Path) -> tuple[Path, Path, str]:
    """A normal image and the mask + defect name of a defective image of the same product."""
    records = list(iter_records(shards))
    defective = next(r for r in records if r["label"] == "defective" and r["mask"] is not None and r["defect_types"])
    normal = next((r for r in records if r["label"] == "normal" and r["product"] == defective["product"]),
                  next(r for r in records if r["label"] == "normal"))
    out.mkdir(parents=True, exist_ok=True)
    normal["image"].save(out / "input.png")
    defective["mask"].save(out / "mask.png")
    product = (defective.get("product") or "part").replace("_", " ")
    return out / "input.png", out / "mask.png", f"a {defective['defect_types'][0]} defect on a {product}"


def run_demo(out: Path, shards: Path | None = None, steps: int = 150, seed: int = 0,
             on_stage: Callable[[str], None] | None = None) -> dict:
    """Run every stage into `out` (its stage folders are replaced) and return their summaries."""
    import torch

    from ..components import write_components

    # Tiny models gain nothing from intra-op threads, and on a busy CPU extra threads spin (measured 4x slower).
    torch.set_num_threads(1)
    out = Path(out)
    shards = Path(shards) if shards else default_shards()
    stage = on_stage or (lambda name: None)
    if not (shards / "manifest.json").is_file():
        refuse_foreign(shards, {"README.md", "data", "webdataset", "manifest.json"}, "a shard folder", "--shards")
        stage("imdd-build demo")
        build_shards(shards)
    for name in STAGES:
        shutil.rmtree(out / name, ignore_errors=True)
    stage("components")
    comps = write_components("tiny", out / "components", seed=seed)
    stage("precompute")
    latents = precompute(str(shards), out / "components", out / "latents", flip=True)
    stage("train-diffusion")
    trained = train_diffusion("tiny", str(out / "latents"), out / "components", out / "model", max_steps=steps,
                              seed=seed)
    prompt = next(r["caption"] for r in iter_records(shards, where="label=defective"))
    stage("generate")
    samples = generate(out / "model", out / "samples", prompt=prompt, n=4, steps=20, seed=seed, device="cpu")
    stage("inpaint-defect")
    image, mask, defect = _inpaint_inputs(shards, out / "inpaint")
    inpainted = inpaint_defect(out / "model", image, mask, defect, out / "inpaint", steps=20, seed=seed, device="cpu")
    summary = {"out": str(out), "shards": str(shards), "components": comps["out"], "latents": latents["samples"],
               "steps": trained["steps"], "loss_start": trained["loss_start"], "loss_end": trained["loss_end"],
               "model": trained["out"], "grid": samples["grid"], "prompt": prompt, "inpainted": inpainted["image"],
               "inpaint_prompt": defect}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
