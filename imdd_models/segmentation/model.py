"""The mask generator: backbone adapter -> HF Mask2Former pixel decoder and masked transformer decoder ->
mask-embedding head -> open-vocabulary classifier.

What is reused from `transformers` (pure PyTorch, maintained): `Mask2FormerPixelDecoder` (multi-scale
deformable attention encoder + FPN to stride 4) and `Mask2FormerTransformerModule` (learnable queries, masked
cross-attention round-robin over three scales, per-layer mask predictions), initialised by their own
`_init_weights`. What is new here: the adapter (adapter.py), `MaskEmbedHead` (ODISE's PooledMaskEmbed) and
`OpenVocabClassifier` (cosine similarity with projected text embeddings over a learnable temperature, plus a
learnable no-object embedding as the (K+1)-th logit).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPreTrainedModel,
    Mask2FormerTransformerModule,
)

from .adapter import BackboneAdapter
from .config import mask2former_config
from .features import Tap


class Mask2FormerBody(Mask2FormerPreTrainedModel):
    """HF's pixel decoder and transformer decoder, without a backbone (ours is the adapter)."""

    def __init__(self, config, in_channels: int):
        super().__init__(config)
        self.pixel_decoder = Mask2FormerPixelDecoder(config, feature_channels=[in_channels] * 4)
        self.transformer_module = Mask2FormerTransformerModule(in_features=config.feature_size, config=config)
        self.post_init()

    def forward(self, pyramid: list[torch.Tensor]):
        pixel = self.pixel_decoder(pyramid)
        decoded = self.transformer_module(pixel.multi_scale_features, pixel.mask_features)
        return pixel.mask_features, decoded


class MaskEmbedHead(nn.Module):
    """Per query: mask-pool the pixel features under its (detached, thresholded) mask, add the query state,
    LayerNorm and a 3-layer MLP -> the mask embedding."""

    def __init__(self, mask_dim: int, hidden_dim: int, embed_dim: int):
        super().__init__()
        self.pool_norm = nn.LayerNorm(mask_dim)
        self.pool_proj = nn.Linear(mask_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        self.mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.ReLU(), nn.Linear(hidden_dim, embed_dim))

    def forward(self, mask_features: torch.Tensor, queries: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        if mask_logits.shape[-2:] != mask_features.shape[-2:]:
            mask_logits = F.interpolate(mask_logits, size=mask_features.shape[-2:], mode="bilinear",
                                        align_corners=False)
        binary = (mask_logits.detach() > 0).to(mask_features.dtype)  # sigmoid > 0.5
        pooled = torch.einsum("bqhw,bchw->bqc", binary, mask_features) / (binary.sum((-1, -2))[..., None] + 1e-6)
        x = self.pool_proj(self.pool_norm(pooled)) + queries
        return self.mlp(self.norm(x))


class OpenVocabClassifier(nn.Module):
    """logits (B, Q, K+1) = scale * cos(mask embedding, [projected text embeddings of K names; no-object])."""

    def __init__(self, text_dim: int, embed_dim: int, logit_scale_init: float, logit_scale_max: float):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.null_embed = nn.Parameter(torch.randn(embed_dim) / math.sqrt(embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.logit_scale_max = float(logit_scale_max)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.logit_scale_max)

    def project(self, text: torch.Tensor) -> torch.Tensor:
        """Frozen text embeddings (N, text_dim) -> unit vectors (N, embed_dim)."""
        return F.normalize(self.text_proj(text.to(self.text_proj.weight.dtype)), dim=-1)

    def forward(self, embeds: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        classes = torch.cat([self.project(text), F.normalize(self.null_embed, dim=-1)[None]], dim=0)
        return self.scale() * F.normalize(embeds, dim=-1) @ classes.T


class MaskGenerator(nn.Module):
    """taps -> per decoder layer: mask logits (B, Q, H/4, W/4), mask embeddings (B, Q, E), class logits."""

    def __init__(self, cfg: dict, taps: list[Tap], text_dim: int):
        super().__init__()
        self.cfg = dict(cfg)
        self.adapter = BackboneAdapter(taps, cfg["adapter_channels"])
        self.body = Mask2FormerBody(mask2former_config(cfg), cfg["adapter_channels"])
        self.embed_head = MaskEmbedHead(cfg["mask_feature_size"], cfg["hidden_dim"], cfg["embed_dim"])
        self.classifier = OpenVocabClassifier(text_dim, cfg["embed_dim"], cfg["logit_scale_init"],
                                              cfg["logit_scale_max"])

    def forward(self, feats: dict[str, torch.Tensor], text: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """`text`: (K, text_dim) frozen embeddings of the class names; lists run over decoder layers."""
        mask_features, decoded = self.body(self.adapter(feats))
        masks, embeds, logits = [], [], []
        for states, mask_logits in zip(decoded.intermediate_hidden_states, decoded.masks_queries_logits):
            emb = self.embed_head(mask_features, states.transpose(0, 1), mask_logits)
            masks.append(mask_logits)
            embeds.append(emb)
            logits.append(self.classifier(emb, text))
        return {"masks": masks, "embeds": embeds, "logits": logits}


def count_trainable(cfg: dict, taps: list[Tap], text_dim: int) -> dict[str, int]:
    """Trainable parameters per part, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = MaskGenerator(cfg, taps, text_dim)
    parts = {"adapter": model.adapter, "pixel_decoder": model.body.pixel_decoder,
             "transformer_decoder": model.body.transformer_module, "mask_embed_head": model.embed_head,
             "classifier": model.classifier}
    counts = {k: sum(p.numel() for p in m.parameters() if p.requires_grad) for k, m in parts.items()}
    counts["total"] = sum(counts.values())
    return counts
