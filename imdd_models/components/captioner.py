"""The implicit captioner: a 2-layer MLP (512 -> 256 -> 768, GELU; 328,704 parameters with the sd15
dimensions) mapping a frozen CLIP image embedding to a pseudo text embedding t_imp.

Training aligns t_imp with the pooled CLIP text embedding e_T of the real caption through
0.3 * (1 - cos(t_imp, e_T)) and, with p = 0.5 per sample, conditions the U-Net on t_imp instead of the
caption (see `pseudo_context`), so images without captions can be conditioned at generation time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ImplicitCaptioner(nn.Module):
    """image embedding (B, in_dim) -> pseudo text embedding (B, out_dim)."""

    def __init__(self, in_dim: int = 512, hidden_dim: int = 256, out_dim: int = 768):
        super().__init__()
        self.config = {"in_dim": in_dim, "hidden_dim": hidden_dim, "out_dim": out_dim}
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.net(image_embeds)

    def save_pretrained(self, folder: Path) -> None:
        """`folder/config.json` + `folder/model.safetensors`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: Path) -> "ImplicitCaptioner":
        """Load a folder written by `save_pretrained` (weights optional: a config-only folder gives a fresh init)."""
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{folder}: no implicit captioner here ({CONFIG_NAME} missing)")
        model = cls(**json.loads((folder / CONFIG_NAME).read_text()))
        if (folder / WEIGHTS_NAME).is_file():
            model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        return model


def captioner_loss(t_imp: torch.Tensor, e_text: torch.Tensor, weight: float = 0.3) -> torch.Tensor:
    """weight * mean(1 - cos(t_imp, e_T)) over the batch (the paper's alignment term)."""
    cos = nn.functional.cosine_similarity(t_imp.float(), e_text.float(), dim=-1)
    return weight * (1.0 - cos).mean()


def pseudo_context(t_imp: torch.Tensor, uncond_context: torch.Tensor) -> torch.Tensor:
    """U-Net context for the implicit branch: the empty caption's hidden states plus t_imp on every token.

    The paper gives no token layout for t_imp; adding it onto the empty-caption states (as ODISE does)
    keeps the 77-token shape, so real and pseudo conditioning mix in one batch.
    """
    return uncond_context.expand(t_imp.shape[0], -1, -1) + t_imp[:, None, :].to(uncond_context.dtype)


def choose_implicit(batch_size: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool mask (B,): True where a sample is conditioned on t_imp instead of its caption (probability p)."""
    return torch.rand(batch_size, generator=generator) < p
