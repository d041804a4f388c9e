"""Training checkpoints: everything a run needs to continue exactly, in folders diffusers loads.

    OUT/checkpoints/step-{N:08d}/
        unet/                    the raw U-Net      (config.json + diffusion_pytorch_model.safetensors)
        unet_ema/                the EMA U-Net      (when EMA is on)   -> UNet2DConditionModel.from_pretrained
        implicit_captioner/      the raw captioner  (config.json + model.safetensors)
        implicit_captioner_ema/  the EMA captioner  (when EMA is on; EMA covers both trained parts)
        optimizer.pt  lr_scheduler.pt
        state.json               step, losses, the run's identity, EMA counters, data positions and noise RNG
                                 states per rank

Written into `step-N.tmp/` and renamed, so a kill never leaves a half checkpoint; the newest complete one is
what `--resume` loads and what `imdd-models export` exports by default. Only the newest `keep` are kept.
Checkpoints of the earlier flat layout (`unet.safetensors`, `captioner.safetensors`, `ema.pt`) still load.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import pickle
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from imdd_build.errors import RunError

_STEP_RE = re.compile(r"^step-(\d{8})$")
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
CAPTIONER_WEIGHTS = "model.safetensors"
EMA_META = ("decay", "min_decay", "optimization_step", "update_after_step", "use_ema_warmup", "inv_gamma", "power")


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints under OUT/checkpoints, oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name))


def find_checkpoint(run: Path, step: int | None = None) -> Path:
    """Checkpoint `step` of a run (the newest when None); RunError naming the ones there are."""
    found = checkpoint_dirs(run)
    if not found:
        raise RunError(f"{run}: no checkpoint under {Path(run) / 'checkpoints'} (a train-diffusion --out folder?)")
    if step is None:
        return found[-1]
    for path in found:
        if int(path.name.split("-")[1]) == step:
            return path
    raise RunError(f"{run}: no checkpoint of step {step} (there are: "
                   f"{', '.join(str(int(p.name.split('-')[1])) for p in found)})")


@contextmanager
def damaged_as_error(checkpoint: Path):
    """Reading a checkpoint: a truncated, missing or unreadable file in it (a disk that filled up, a copy cut
    short, a hand edit) is one RunError naming the checkpoint and the reason, not a JSON/safetensors/pickle
    traceback. The checkpoints before it are untouched: deleting the damaged one resumes from the one before.
    Only the errors of a damaged file are caught: a size mismatch with the model, or a GPU-saved tensor on a
    CPU-only machine, keeps its own message (another checkpoint would fail the same way)."""
    try:
        yield
    except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError, EOFError, pickle.UnpicklingError,
            SafetensorError) as exc:
        _damaged(checkpoint, exc)
    except (RuntimeError, OSError) as exc:  # torch.load's zip reader, diffusers' loader: only a cut-short file
        if not any(marker in str(exc) for marker in _UNREADABLE):
            raise
        _damaged(checkpoint, exc)


_UNREADABLE = ("PytorchStreamReader failed", "failed finding central directory", "unexpected EOF",
               "Unable to load weights from checkpoint file")


def _damaged(checkpoint: Path, exc: BaseException):
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    raise RunError(f"{checkpoint}: damaged checkpoint ({type(exc).__name__}: {reason}); delete that folder to "
                   "use the checkpoint before it") from None


def read_state(checkpoint: Path) -> dict:
    """A checkpoint's state.json (RunError when it is missing or damaged)."""
    with damaged_as_error(checkpoint):
        state = json.loads((Path(checkpoint) / "state.json").read_text())
    if not isinstance(state, dict):
        raise RunError(f"{checkpoint}: damaged checkpoint (state.json is not a JSON object); delete that folder "
                       "to use the checkpoint before it")
    return state


def tensor_state(state) -> str:
    """A torch object (generator state, small dicts) as base64 text for state.json."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def untensor_state(text: str):
    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=False)


def _cpu(tensors: dict) -> dict:
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format).contiguous() for k, v in tensors.items()}


def ema_weights(module: torch.nn.Module, shadow: list[torch.Tensor]) -> dict:
    """`module`'s state dict with its parameters replaced by their EMA shadows (in parameter order)."""
    state = dict(module.state_dict())
    for (name, _), value in zip(module.named_parameters(), shadow):
        state[name] = value
    return state


def _write_unet(folder: Path, unet, weights: dict) -> None:
    """A diffusers model folder: the U-Net's config.json and its weights as one safetensors file."""
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_config(str(folder))
    save_file(_cpu(weights), str(folder / UNET_WEIGHTS))


def _write_captioner(folder: Path, captioner, weights: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(captioner.config, indent=2, sort_keys=True) + "\n")
    save_file(_cpu(weights), str(folder / CAPTIONER_WEIGHTS))


def save_checkpoint(out: Path, step: int, unet, captioner, optimizer, lr_scheduler, ema, state: dict,
                    keep: int) -> Path:
    """Write checkpoint `step` atomically (main process only) and prune old ones. `ema` covers the U-Net's
    parameters followed by the captioner's."""
    root = Path(out) / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f"step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_unet(tmp / "unet", unet, unet.state_dict())
    _write_captioner(tmp / "implicit_captioner", captioner, captioner.state_dict())
    if ema is not None:
        n_unet = len(list(unet.parameters()))
        _write_unet(tmp / "unet_ema", unet, ema_weights(unet, ema.shadow_params[:n_unet]))
        _write_captioner(tmp / "implicit_captioner_ema", captioner,
                         ema_weights(captioner, ema.shadow_params[n_unet:]))
        ema_state = ema.state_dict()
        state = {**state, "ema": {k: ema_state[k] for k in EMA_META}}
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(out)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _ordered(module: torch.nn.Module, weights: dict) -> list[torch.Tensor]:
    return [weights[name] for name, _ in module.named_parameters()]


def load_checkpoint(path: Path, unet, captioner, ema) -> dict:
    """Load weights and EMA into the (unwrapped) modules; returns state.json (optimizer/scheduler via paths)."""
    path = Path(path)
    state = read_state(path)
    with damaged_as_error(path):
        return _load_weights(path, unet, captioner, ema, state)


def _load_weights(path: Path, unet, captioner, ema, state: dict) -> dict:
    if (path / "unet.safetensors").is_file():  # the earlier flat layout
        unet.load_state_dict(load_file(str(path / "unet.safetensors")))
        captioner.load_state_dict(load_file(str(path / "captioner.safetensors")))
        if ema is not None and (path / "ema.pt").is_file():
            old = torch.load(path / "ema.pt", weights_only=False)
            n_unet = len(list(unet.parameters()))
            if len(old["shadow_params"]) == n_unet:  # the U-Net only: the captioner's EMA starts from its weights
                old["shadow_params"] = list(old["shadow_params"]) + [p.detach().clone()
                                                                     for p in captioner.parameters()]
            ema.load_state_dict(old)
        return state
    unet.load_state_dict(load_file(str(path / "unet" / UNET_WEIGHTS)))
    captioner.load_state_dict(load_file(str(path / "implicit_captioner" / CAPTIONER_WEIGHTS)))
    if ema is not None:
        if "ema" not in state:
            raise RunError(f"{path}: written without EMA; resume with use_ema: false")
        shadow = (_ordered(unet, load_file(str(path / "unet_ema" / UNET_WEIGHTS)))
                  + _ordered(captioner, load_file(str(path / "implicit_captioner_ema" / CAPTIONER_WEIGHTS))))
        ema.load_state_dict({**state["ema"], "shadow_params": shadow})
    return state
