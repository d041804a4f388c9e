"""Training configurations: the `tiny` and `sd15` presets, or a YAML file overriding any field of one
(`base: sd15` picks the preset it starts from). `TrainConfig` is a typed model (`imdd_models.config`): unknown
keys, wrong types and out-of-range values are one error line naming the file and the field."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import StageConfig, load_stage_config


class TrainConfig(StageConfig):
    batch_size: int = Field(32, gt=0)  # per process and micro-step; global batch = GPUs x batch x accumulation
    gradient_accumulation_steps: int = Field(1, gt=0)  # micro-batches per optimizer step (accelerate's accumulate)
    learning_rate: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(500, ge=0)  # linear warmup, then constant (the paper's schedule)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    weight_decay: float = Field(1e-2, ge=0)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: int = Field(100, gt=0)  # how far a run goes when --max-steps is not given
    p_implicit: float = Field(0.5, ge=0, le=1)  # probability of conditioning a sample on the captioner's t_imp
    captioner_loss_weight: float = Field(0.3, ge=0)  # L = L_diff + 0.3 (1 - cos(t_imp, e_T))
    caption_dropout: float = Field(0.1, ge=0, le=1)  # our addition: empty conditioning for classifier-free guidance
    snr_gamma: float | None = Field(None, gt=0)  # min-SNR loss weighting (5.0 is the usual value); None = plain MSE
    use_ema: bool = True
    ema_decay: float = Field(0.9999, gt=0, lt=1)
    ema_power: float = Field(0.75, gt=0)  # EMA warmup: decay = min(ema_decay, 1 - (1 + step) ** -power)
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the U-Net
    mixed_precision: Literal["no", "fp16", "bf16"] = "bf16"  # autocast dtype on GPU; CPU runs stay fp32
    # dtype of the frozen VAE and CLIP towers: auto = the mixed-precision dtype on GPU, fp32 on the CPU
    frozen_dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    channels_last: bool = True  # U-Net weights and inputs in channels_last on CUDA
    allow_tf32: bool = True  # TF32 matmuls and convolutions on CUDA (what stays fp32 under autocast)
    flip: bool = True  # random horizontal flip (a cached flipped latent when precomputed with --flip)
    shuffle_buffer: int = Field(2000, ge=0)
    num_workers: int = Field(8, ge=0)  # per process; capped by the cores each process has
    checkpoint_every: int = Field(2000, gt=0)  # optimizer steps (--save-every)
    checkpoint_every_minutes: float = Field(30.0, ge=0)  # also after this much time (--save-every-minutes; 0 = off)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(10, gt=0)


PRESET_OVERRIDES = {
    "sd15": {},
    "tiny": {"batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 5, "shuffle_buffer": 16, "num_workers": 0,
             "checkpoint_every": 1000, "ema_decay": 0.999, "log_every": 5},
    # `small`: components --preset small (128 px) on a CPU, minutes not hours (bench/seg_real.py).
    "small": {"batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 20, "shuffle_buffer": 256, "num_workers": 0,
              "checkpoint_every": 1000, "ema_decay": 0.99, "log_every": 10},
}


# The training preset that suits each components preset (`--config` defaults to it).
COMPONENTS_CONFIG = {"tiny": "tiny", "small": "small", "sd15": "sd15", "sd15-random": "sd15"}


def default_config(components) -> str:
    """The training preset of a components folder (components.json's preset); sd15 for a folder without one."""
    import json
    from pathlib import Path
    try:
        preset = json.loads((Path(components) / "components.json").read_text()).get("preset")
    except (OSError, ValueError, AttributeError):
        preset = None
    return COMPONENTS_CONFIG.get(preset, "sd15")


def load_config(spec: str, default_base: str = "sd15") -> TrainConfig:
    """`tiny`, `sd15` or a YAML file (`base:` preset, `default_base` when absent, plus any TrainConfig fields);
    one RunError line on any problem."""
    return load_stage_config(spec, TrainConfig, PRESET_OVERRIDES, default_base=default_base)


def config_dict(config: TrainConfig) -> dict:
    return config.to_dict()
