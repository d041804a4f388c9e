"""Mask generator presets: `paper` (44.0M trainable parameters, the IMDD-1M recipe) and `tiny` (CPU tests).

`paper`: ODISE-style tap projections to 256 channels summed per stride (4..32), HF Mask2Former's
multi-scale deformable-attention pixel decoder at 256 channels (6 encoder layers, FPN to stride 4), its masked
transformer decoder at 384 wide (FFN 3072, 9 layers + the prediction on the learnable queries, 100 queries),
a 256-d mask embedding classified against projected text embeddings. research/anchors-models.md 4.2 measured
the 384/3072/10 head at 44.0M; `imdd-models train-seg --config paper --json` reports the exact count.
Losses (Mask2Former/ODISE weights): class 2.0 (no-object 0.1), mask BCE 5.0, dice 5.0, on point samples;
grounding 1.0; deep supervision. Training: AdamW lr 5e-5, weight decay 0.05, batch 16, 50 epochs; linear warmup over 500 steps then x0.1 at
88.9% and 96.3% of the planned steps (ODISE); horizontal flip (p 0.5) and scale jitter 0.5-2.0 with crop or pad
back to the canvas (narrower than ODISE's COCO LSJ 0.1-2.0: defects are small; tiny: 0.8-1.25, warmup 5).
Open vocabulary (ODISE's `PoolingCLIPHead`): at prediction the learned classifier is ensembled geometrically
with a frozen CLIP classifier over mask-pooled CLIP image features, weight `clip_alpha` for trained names and
`clip_beta` for names never trained on (the values and why: docs/guides/segment-detect.md, "What open vocabulary means here").

`SegConfig` is the typed stage-2 config (`imdd_models.config.StageConfig`): a preset name or a YAML file
(`base: tiny` plus any field) is validated in one error line naming the file and the field.
"""

from __future__ import annotations


from pydantic import Field


from ..config import StageConfig, build_config, load_stage_config


class SegConfig(StageConfig):
    # model sizes
    adapter_channels: int = Field(256, gt=0)
    feature_size: int = Field(256, gt=0)
    mask_feature_size: int = Field(256, gt=0)
    hidden_dim: int = Field(384, gt=0)
    dim_feedforward: int = Field(3072, gt=0)
    encoder_layers: int = Field(6, gt=0)
    encoder_feedforward_dim: int = Field(1024, gt=0)
    decoder_layers: int = Field(10, gt=1)  # HF's decoder counts the prediction on the learnable queries as one
    num_attention_heads: int = Field(8, gt=0)
    num_queries: int = Field(100, gt=0)
    embed_dim: int = Field(256, gt=0)
    # losses
    train_num_points: int = Field(12544, gt=0)
    oversample_ratio: float = Field(3.0, ge=1)
    importance_sample_ratio: float = Field(0.75, ge=0, le=1)
    class_weight: float = Field(2.0, ge=0)
    mask_weight: float = Field(5.0, ge=0)
    dice_weight: float = Field(5.0, ge=0)
    no_object_weight: float = Field(0.1, ge=0)
    grounding_weight: float = Field(1.0, ge=0)
    label_weight: float = Field(1.0, ge=0)
    # an unmatched query whose predicted mask lies at least this much inside an unseen-defect (ignore) region
    # gets no "no-object" class loss: unseen defects are never taught as background
    ignore_query_overlap: float = Field(0.5, gt=0, le=1)
    # training
    batch_size: int = Field(16, gt=0)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    epochs: int = Field(50, gt=0)
    max_grad_norm: float = Field(0.01, ge=0)  # Mask2Former's full-model clipping value; 0 = no clipping
    logit_scale_init: float = 2.659260036932778  # log(1 / 0.07)
    logit_scale_max: float = Field(100.0, gt=0)
    # recipe (augment.py, schedule.py): flip + scale jitter; ODISE's warmup, then x0.1 at 88.9% and 96.3%
    hflip: float = Field(0.5, ge=0, le=1)
    scale_min: float = Field(0.5, gt=0)
    scale_max: float = Field(2.0, gt=0)
    warmup_steps: int = Field(500, ge=0)
    warmup_factor: float = Field(0.001, gt=0, le=1)
    lr_milestones: list[float] = [0.889, 0.963]  # fractions of the planned steps
    lr_gamma: float = Field(0.1, gt=0, le=1)
    # open-vocabulary ensemble at prediction (ODISE PoolingCLIPHead defaults)
    clip_alpha: float = Field(0.35, ge=0, le=1)  # CLIP's weight for names the model was trained on
    clip_beta: float = Field(0.65, ge=0, le=1)  # CLIP's weight for names it never saw
    clip_logit_scale: float = Field(100.0, gt=0)  # CLIP's own temperature (1/0.01)
    clip_input_scale: int = Field(2, ge=1, le=8)  # CLIP sees images at this x its size: more tokens to pool


PRESET_OVERRIDES: dict[str, dict] = {
    "paper": {},
    # `tiny`: the same losses, matching and schedule at CPU-test sizes (only what differs from `paper`).
    "tiny": {"adapter_channels": 32, "feature_size": 32, "mask_feature_size": 32, "hidden_dim": 32,
             "dim_feedforward": 64, "encoder_layers": 1, "encoder_feedforward_dim": 64, "decoder_layers": 3,
             "num_attention_heads": 4, "num_queries": 8, "embed_dim": 32, "train_num_points": 1024,
             "batch_size": 4, "lr": 1e-3, "max_grad_norm": 1.0,
             "scale_min": 0.8, "scale_max": 1.25, "warmup_steps": 5},
    # `small`: the CPU real-data preset (issue 29 item 7; components --preset small, 128 px): wider than `tiny`
    # where it pays on real defects (64-channel stride-4 mask features, 16 queries), minutes on two cores.
    "small": {"adapter_channels": 64, "feature_size": 64, "mask_feature_size": 64, "hidden_dim": 64,
              "dim_feedforward": 128, "encoder_layers": 2, "encoder_feedforward_dim": 128, "decoder_layers": 3,
              "num_attention_heads": 4, "num_queries": 16, "embed_dim": 64, "train_num_points": 2048,
              "batch_size": 8, "lr": 1e-3, "max_grad_norm": 1.0,
              "scale_min": 0.8, "scale_max": 1.25, "warmup_steps": 20},
}
# Plain dicts of every preset's values (what seg_config.json records under "model").
PRESETS: dict[str, dict] = {name: SegConfig(**o).to_dict() for name, o in PRESET_OVERRIDES.items()}


def load_seg_config(spec: str) -> SegConfig:
    """A preset name or a YAML file (`base: PRESET` plus any SegConfig field), validated."""
    return load_stage_config(spec, SegConfig, PRESET_OVERRIDES, default_base="paper")


def get_config(name: str) -> dict:
    """A preset's (or YAML file's) values as a dict; RunError naming the choices for an unknown one."""
    return load_seg_config(name).to_dict()


def with_overrides(cfg: dict, overrides: dict, where: str = "options") -> dict:
    """`cfg` with `overrides` applied and validated again (one RunError line on a bad value)."""
    return build_config(SegConfig, {**cfg, **overrides}, where).to_dict()


def saved_config(values: dict) -> dict:
    """A model folder's recorded values completed with today's defaults (folders written before a field existed)."""
    known = set(SegConfig.model_fields)
    return SegConfig(**{k: v for k, v in values.items() if k in known}).to_dict()


def mask2former_config(cfg: dict, num_labels: int = 1):
    """The HF `Mask2FormerConfig` for the pixel decoder, transformer decoder and loss of a preset."""
    from transformers import Mask2FormerConfig
    keys = ("feature_size", "mask_feature_size", "hidden_dim", "dim_feedforward", "encoder_layers",
            "encoder_feedforward_dim", "decoder_layers", "num_attention_heads", "num_queries", "train_num_points",
            "oversample_ratio", "importance_sample_ratio", "class_weight", "mask_weight", "dice_weight",
            "no_object_weight")
    return Mask2FormerConfig(num_labels=max(1, num_labels), feature_strides=[4, 8, 16, 32], common_stride=4,
                             use_auxiliary_loss=True, **{k: cfg[k] for k in keys})
