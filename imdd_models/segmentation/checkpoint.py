"""The segmentation model folder: what `train-seg --out DIR` writes and `predict --model DIR` loads.

    DIR/seg_config.json     preset values, trained classes, feature settings (diffusion folder, timestep,
                            noise seed, resolution, taps), text width
    DIR/model.safetensors   the trainable weights (adapter, Mask2Former body, mask-embedding head, classifier)
    DIR/checkpoint/         resume state: model.safetensors, optimizer.pt, rng.pt, trainer.json (step, losses)
    DIR/selection.json      the training records chosen (keys, per-class counts, short classes)
    DIR/train_summary.json  the final summary (also the command's JSON)

Weights and the config are written to a temporary name and renamed, so a killed run leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..jsonfile import read_json

CONFIG = "seg_config.json"
WEIGHTS = "model.safetensors"
STATE_DIR = "checkpoint"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_model(out: Path, model: torch.nn.Module, config: dict) -> None:
    save_weights(out, model.state_dict(), config)


def save_weights(out: Path, state: dict, config: dict | None, name: str = WEIGHTS) -> None:
    """A state dict as `name` (atomically) and, when given, the config as seg_config.json."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    _atomic(out / name, lambda p: save_file(state, str(p)))
    if config is not None:
        write_json(out, CONFIG, config)


def write_json(folder: Path, name: str, value: dict) -> None:
    """A JSON file of the model folder (seg_config.json, calibration.json), written atomically."""
    _atomic(Path(folder) / name, lambda p: p.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n"))


def read_weights(path: Path) -> dict:
    return load_file(str(path))


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a segmentation model folder ({CONFIG} missing)")
    return read_json(path)


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: {WEIGHTS} missing")
    model.load_state_dict(load_file(str(path)))


def save_state(out: Path, model: torch.nn.Module, optimizer, trainer: dict) -> None:
    """Weights, optimizer, RNG states and the trainer's progress as one unit: written to a new folder that
    then replaces the old one (a kill at any point leaves one whole checkpoint, `checkpoint` or `.old`)."""
    new, cur, old = out / (STATE_DIR + ".new"), out / STATE_DIR, out / (STATE_DIR + ".old")
    if new.exists():
        shutil.rmtree(new)
    new.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(new / WEIGHTS))
    torch.save(optimizer.state_dict(), new / "optimizer.pt")
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    torch.save(rng, new / "rng.pt")
    (new / "trainer.json").write_text(json.dumps(trainer, sort_keys=True) + "\n")
    if old.exists():
        shutil.rmtree(old)
    if cur.exists():
        os.replace(cur, old)
    os.replace(new, cur)
    shutil.rmtree(old, ignore_errors=True)


def _state_dir(out: Path) -> Path | None:
    for name in (STATE_DIR, STATE_DIR + ".old"):
        if (Path(out) / name / "trainer.json").is_file():
            return Path(out) / name
    return None


def has_state(out: Path) -> bool:
    return _state_dir(out) is not None


def load_state(out: Path, model: torch.nn.Module, optimizer) -> dict:
    """Restore weights, optimizer and RNG states; returns the trainer's progress."""
    state = _state_dir(out)
    if state is None:
        raise FileNotFoundError(f"{out}: no checkpoint to resume from")
    model.load_state_dict(load_file(str(state / WEIGHTS)))
    optimizer.load_state_dict(torch.load(state / "optimizer.pt", weights_only=False))
    rng = torch.load(state / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((state / "trainer.json").read_text())
