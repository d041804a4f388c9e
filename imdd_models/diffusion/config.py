"""Training configurations: the `tiny` and `sd15` presets, or a YAML file overriding any field of one
(`base: sd15` picks the preset it starts from)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from imdd_build.errors import RunError


@dataclass
class TrainConfig:
    batch_size: int = 32  # per process; the paper's global batch 256 = 8 GPUs x 32
    learning_rate: float = 1e-4
    warmup_steps: int = 500  # linear warmup, then constant (the paper's schedule)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    epochs: int = 100  # how far a run goes when --max-steps is not given
    p_implicit: float = 0.5  # probability of conditioning a sample on the implicit captioner's t_imp
    captioner_loss_weight: float = 0.3  # L = L_diff + 0.3 (1 - cos(t_imp, e_T))
    caption_dropout: float = 0.1  # our addition to the paper: empty conditioning for classifier-free guidance
    snr_gamma: float | None = None  # min-SNR loss weighting (5.0 is the usual value); None = plain MSE
    use_ema: bool = True
    ema_decay: float = 0.9999
    ema_power: float = 0.75  # EMA warmup: decay = min(ema_decay, 1 - (1 + step) ** -power)
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the U-Net
    mixed_precision: str = "bf16"  # autocast dtype on GPU (no/fp16/bf16); CPU runs stay fp32
    flip: bool = True  # random horizontal flip (a cached flipped latent when precomputed with --flip)
    shuffle_buffer: int = 2000
    num_workers: int = 8
    checkpoint_every: int = 2000
    keep_checkpoints: int = 2
    log_every: int = 10


PRESET_OVERRIDES = {
    "sd15": {},
    "tiny": {"batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 5, "shuffle_buffer": 16, "num_workers": 0,
             "checkpoint_every": 1000, "ema_decay": 0.999, "log_every": 5},
}


def load_config(spec: str) -> TrainConfig:
    """`tiny`, `sd15` or a YAML file (`base:` preset plus any TrainConfig fields); RunError on unknown keys."""
    if spec in PRESET_OVERRIDES:
        return TrainConfig(**PRESET_OVERRIDES[spec])
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--config {spec}: neither a preset ({', '.join(PRESET_OVERRIDES)}) nor a file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:  # not a ValueError: without this, a typo in the file is a traceback
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise RunError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a mapping of TrainConfig fields")
    base = data.pop("base", "sd15")
    if base not in PRESET_OVERRIDES:
        raise RunError(f"{path}: base {base!r} is not a preset ({', '.join(PRESET_OVERRIDES)})")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RunError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return TrainConfig(**{**PRESET_OVERRIDES[base], **data})


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
