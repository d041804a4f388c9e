"""Training checkpoints: everything a run needs to continue exactly.

    OUT/checkpoints/step-{N:08d}/  unet.safetensors  captioner.safetensors  optimizer.pt  ema.pt
                                   lr_scheduler.pt  state.json (step, losses, data positions, RNG states per rank)

Written into `step-N.tmp/` and renamed, so a kill never leaves a half checkpoint; the newest complete
one is what `--resume` loads. Only the newest `keep` are kept.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_STEP_RE = re.compile(r"^step-(\d{8})$")


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints under OUT/checkpoints, oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name))


def tensor_state(state) -> str:
    """A torch object (generator state, small dicts) as base64 text for state.json."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def untensor_state(text: str):
    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=False)


def _weights(module: torch.nn.Module) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(out: Path, step: int, unet, captioner, optimizer, lr_scheduler, ema, state: dict,
                    keep: int) -> Path:
    """Write checkpoint `step` atomically (main process only) and prune old ones."""
    root = Path(out) / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f"step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_weights(unet), str(tmp / "unet.safetensors"))
    save_file(_weights(captioner), str(tmp / "captioner.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
    if ema is not None:
        torch.save(ema.state_dict(), tmp / "ema.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(out)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, unet, captioner, ema) -> dict:
    """Load weights and EMA into the (unwrapped) modules; returns state.json (optimizer/scheduler via paths)."""
    path = Path(path)
    unet.load_state_dict(load_file(str(path / "unet.safetensors")))
    captioner.load_state_dict(load_file(str(path / "captioner.safetensors")))
    if ema is not None and (path / "ema.pt").is_file():
        ema.load_state_dict(torch.load(path / "ema.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())
