"""The trained pair: U-Net + implicit captioner in one module, so one DDP wrapper covers both."""

from __future__ import annotations

import torch
from torch import nn

from ..components.captioner import pseudo_context


class DiffusionModel(nn.Module):
    """Conditions each sample on its caption, on the captioner's t_imp, or on nothing (caption dropout)."""

    def __init__(self, unet: nn.Module, captioner: nn.Module):
        super().__init__()
        self.unet = unet
        self.captioner = captioner

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, text_context: torch.Tensor,
                uncond_context: torch.Tensor, image_embeds: torch.Tensor, implicit: torch.Tensor,
                dropped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t_imp = self.captioner(image_embeds)
        context = torch.where(implicit[:, None, None], pseudo_context(t_imp, uncond_context).to(text_context.dtype),
                              text_context)
        context = torch.where(dropped[:, None, None], uncond_context.expand_as(context).to(context.dtype), context)
        return self.unet(noisy, timesteps, encoder_hidden_states=context).sample, t_imp
