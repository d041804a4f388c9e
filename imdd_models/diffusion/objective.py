"""The stage-1 training objective on the device: the DDPM noise schedule (noising, the epsilon or v-prediction
target, min-SNR weights) and the implicit captioner's alignment loss, each without a host sync per step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imdd_build.errors import RunError


class NoiseSchedule:
    """The DDPM scheduler's alphas_cumprod on the device: add_noise, the loss target and min-SNR weights with no
    host copy per step (diffusers' versions move the schedule to the device on every call)."""

    def __init__(self, scheduler, device: torch.device):
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise RunError(f"scheduler prediction_type {self.prediction_type!r}: epsilon or v_prediction only")
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)

    def _coefs(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod[timesteps]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return a.sqrt().to(like.dtype).view(shape), (1 - a).sqrt().to(like.dtype).view(shape)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        sqrt_a, sqrt_1ma = self._coefs(timesteps, latents)
        return sqrt_a * latents + sqrt_1ma * noise

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the U-Net predicts: the noise (epsilon) or the velocity sqrt(a) noise - sqrt(1 - a) x0."""
        if self.prediction_type == "epsilon":
            return noise
        sqrt_a, sqrt_1ma = self._coefs(timesteps, latents)
        return sqrt_a * noise - sqrt_1ma * latents

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[timesteps]
        return a / (1 - a)

    def min_snr_weights(self, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma loss weights: min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) / (SNR + 1) for v."""
        snr = self.snr(timesteps)
        clipped = torch.clamp(snr, max=gamma)
        return clipped / snr if self.prediction_type == "epsilon" else clipped / (snr + 1)


def masked_captioner_loss(t_imp: torch.Tensor, e_text: torch.Tensor, mask: torch.Tensor,
                          weight: float) -> torch.Tensor:
    """weight * mean(1 - cos) over the samples in `mask` (0 when none), without a host sync."""
    cos = F.cosine_similarity(t_imp.float(), e_text.float(), dim=-1)
    mask = mask.to(cos.dtype)
    return weight * ((1.0 - cos) * mask).sum() / mask.sum().clamp(min=1.0)
