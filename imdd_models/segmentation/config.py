"""Mask generator presets: `paper` (~45M trainable parameters, the IMDD-1M recipe) and `tiny` (CPU tests).

`paper`: ODISE-style tap projections to 256 channels summed per stride (4..32), HF Mask2Former's
multi-scale deformable-attention pixel decoder at 256 channels (6 encoder layers, FPN to stride 4), its masked
transformer decoder at 384 wide (FFN 3072, 9 layers + the prediction on the learnable queries, 100 queries),
a 256-d mask embedding classified against projected text embeddings. research/anchors-models.md 4.2 measured
the 384/3072/10 head at 44.0M; `imdd-models train-seg --config paper --json` reports the exact count.
Losses (Mask2Former/ODISE weights): class 2.0 (no-object 0.1), mask BCE 5.0, dice 5.0, on point samples;
grounding 1.0; deep supervision. Training: AdamW lr 5e-5, weight decay 0.05, batch 16, 50 epochs.
"""

from __future__ import annotations

import copy

from imdd_build.errors import RunError

PRESETS: dict[str, dict] = {
    "paper": {
        "adapter_channels": 256, "feature_size": 256, "mask_feature_size": 256, "hidden_dim": 384,
        "dim_feedforward": 3072, "encoder_layers": 6, "encoder_feedforward_dim": 1024, "decoder_layers": 10,
        "num_attention_heads": 8, "num_queries": 100, "embed_dim": 256,
        "train_num_points": 12544, "oversample_ratio": 3.0, "importance_sample_ratio": 0.75,
        "class_weight": 2.0, "mask_weight": 5.0, "dice_weight": 5.0, "no_object_weight": 0.1,
        "grounding_weight": 1.0, "label_weight": 1.0,
        "batch_size": 16, "lr": 5e-5, "weight_decay": 0.05, "epochs": 50, "max_grad_norm": 0.01,
        "logit_scale_init": 2.659260036932778, "logit_scale_max": 100.0,
    },
}
# `tiny`: the same losses, matching and schedule at CPU-test sizes (only what differs from `paper`).
PRESETS["tiny"] = {**PRESETS["paper"], **{
    "adapter_channels": 32, "feature_size": 32, "mask_feature_size": 32, "hidden_dim": 32,
    "dim_feedforward": 64, "encoder_layers": 1, "encoder_feedforward_dim": 64, "decoder_layers": 3,
    "num_attention_heads": 4, "num_queries": 8, "embed_dim": 32, "train_num_points": 1024,
    "batch_size": 4, "lr": 1e-3, "max_grad_norm": 1.0,
}}
# `small`: the CPU real-data preset (issue 29 item 7, with components --preset small at 128 px): wider than
# `tiny` where it pays on real defects (64-channel stride-4 mask features, 16 queries), still minutes on 2 cores.
PRESETS["small"] = {**PRESETS["paper"], **{
    "adapter_channels": 64, "feature_size": 64, "mask_feature_size": 64, "hidden_dim": 64,
    "dim_feedforward": 128, "encoder_layers": 2, "encoder_feedforward_dim": 128, "decoder_layers": 3,
    "num_attention_heads": 4, "num_queries": 16, "embed_dim": 64, "train_num_points": 2048,
    "batch_size": 8, "lr": 1e-3, "max_grad_norm": 1.0,
}}
# `paper`'s max_grad_norm 0.01 is Mask2Former's full-model clipping value (detectron2 "full_model" clip).


def get_config(name: str) -> dict:
    """A copy of a preset; RunError naming the choices for an unknown one."""
    if name not in PRESETS:
        raise RunError(f"unknown --config {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def mask2former_config(cfg: dict, num_labels: int = 1):
    """The HF `Mask2FormerConfig` for the pixel decoder, transformer decoder and loss of a preset."""
    from transformers import Mask2FormerConfig
    keys = ("feature_size", "mask_feature_size", "hidden_dim", "dim_feedforward", "encoder_layers",
            "encoder_feedforward_dim", "decoder_layers", "num_attention_heads", "num_queries", "train_num_points",
            "oversample_ratio", "importance_sample_ratio", "class_weight", "mask_weight", "dice_weight",
            "no_object_weight")
    return Mask2FormerConfig(num_labels=max(1, num_labels), feature_strides=[4, 8, 16, 32], common_stride=4,
                             use_auxiliary_loss=True, **{k: cfg[k] for k in keys})
