"""The diffusion-feature backbone adapter: taps -> a 4-level pyramid (strides 4, 8, 16, 32) for Mask2Former.

As ODISE's `FeatureExtractorBackbone`: every tap gets its own projection (1x1 conv to the pyramid width,
GroupNorm, GELU, a 3x3 conv and GroupNorm with a residual), strides are clamped to [4, 32] (SD1.5's stride-64
tap joins stride 32) and projected maps of one stride are summed. A stride without a tap (a 2-level tiny U-Net
has none at 32) is resampled from the nearest level that has one, so any SD-shaped U-Net/VAE pair works.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .features import Tap

STRIDES = (4, 8, 16, 32)


def _groups(channels: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


class TapProjection(nn.Module):
    """in_ch -> out_ch: 1x1 conv + GN + GELU, then a residual 3x3 conv + GN."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.GroupNorm(_groups(out_ch), out_ch),
                                    nn.GELU())
        self.refine = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
                                    nn.GroupNorm(_groups(out_ch), out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return F.gelu(x + self.refine(x))


class BackboneAdapter(nn.Module):
    """{tap name: map} -> [stride-4, stride-8, stride-16, stride-32] maps of `channels` each."""

    def __init__(self, taps: list[Tap], channels: int):
        super().__init__()
        self.taps = list(taps)
        self.channels = channels
        self.proj = nn.ModuleDict({_key(t.name): TapProjection(t.channels, channels) for t in self.taps})
        self.level_of = {t.name: min(max(t.stride, STRIDES[0]), STRIDES[-1]) for t in self.taps}

    def forward(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        tap = self.taps[0]
        size = feats[tap.name].shape[-1] * tap.stride  # the model input resolution
        levels: dict[int, torch.Tensor] = {}
        for t in self.taps:
            s = self.level_of[t.name]
            x = self.proj[_key(t.name)](feats[t.name])
            x = _resize(x, size // s)
            levels[s] = levels[s] + x if s in levels else x
        out = []
        for s in STRIDES:
            if s not in levels:  # the nearest level with a tap, resampled
                near = min(levels, key=lambda have: (abs(have - s), have))
                levels[s] = _resize(levels[near], size // s)
            out.append(levels[s])
        return out


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    side = max(1, side)
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    if x.shape[-1] > side:
        return F.adaptive_avg_pool2d(x, side)
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def _key(name: str) -> str:
    return name.replace(".", "_")
