"""Frozen diffusion features: one noised U-Net forward pass, multi-scale maps taken with hooks.

`DiffusionFeatureExtractor.from_folder(DIR)` loads a stage-1 model folder (the diffusers Stable Diffusion
layout plus image_encoder/, feature_extractor/ and implicit_captioner/) or any SD-1.x-shaped diffusers folder
(no captioner there: the empty caption, or a caption given per image, conditions the U-Net).

Per batch: images at the model's resolution -> VAE latent means (x scaling factor) -> q_sample at timestep t
(default 50) with one fixed noise tensor drawn from `seed` (the same for every image, as ODISE does: features
are a deterministic function of the image) -> one U-Net forward conditioned on the implicit captioner's pseudo
embedding added onto the empty caption's states (or on a caption). Taps (ODISE's equivalents, see
research/anchors-models.md 1.3): the *input* of `up_blocks[i].resnets[-1]` for every decoder level (skip and
upsampled path concatenated; 2560@64, 1920@32, 960@16, 640@8 px strides for SD1.5 at 512), plus the VAE
encoder's stride-4 and stride-8 block outputs, which the latent encoding computes anyway. The forward stops
after the last tap (conv_out and the final norm are skipped). Everything runs under no_grad: no gradient ever
reaches the frozen weights, so the features of a fixed training set may be cached (`FeatureCache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .._compat import hf_ready
from ..components.loader import images_to_pixels

hf_ready()  # before model.py's module-level transformers import (this package imports features first)

DEFAULT_TIMESTEP = 50


class _Stop(Exception):
    """Raised by the last hook: the rest of the U-Net is not needed."""


@dataclass(frozen=True)
class Tap:
    """One feature map: where it comes from, its channels and its stride in model-input pixels."""

    name: str
    channels: int
    stride: int


def _vae_taps(vae_config) -> list[Tap]:
    """Encoder block outputs at strides 4 and 8 (block k downsamples to 2^(k+1) except the last)."""
    channels = list(vae_config["block_out_channels"])
    taps = []
    for k, ch in enumerate(channels):
        stride = 2 ** min(k + 1, len(channels) - 1)
        if stride in (4, 8) and not any(t.stride == stride for t in taps):
            taps.append(Tap(f"vae.down_blocks.{k}", int(ch), stride))
    return taps


def _unet_taps(unet, vae_factor: int) -> list[Tap]:
    """Inputs of the last resnet of every decoder level, coarsest first."""
    n = len(unet.up_blocks)
    return [Tap(f"unet.up_blocks.{i}", int(block.resnets[-1].in_channels), vae_factor * 2 ** (n - 1 - i))
            for i, block in enumerate(unet.up_blocks)]


def describe_taps(unet_config: dict, vae_config: dict) -> list[Tap]:
    """The taps of a U-Net/VAE pair from their configs alone (the U-Net built on the meta device: no memory)."""
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return _vae_taps(vae_config) + _unet_taps(unet, factor)


def _load_captioner(folder: Path):
    from ..components import ImplicitCaptioner
    from ..components.captioner import WEIGHTS_NAME
    if not (folder / WEIGHTS_NAME).is_file():
        return None  # a components folder holds only the config: an untrained captioner would add noise
    return ImplicitCaptioner.from_pretrained(folder)


def prepare_inputs(images: list[Image.Image], resolution: int, image_processor=None) -> dict:
    """CPU preprocessing of a batch: `pixels` (B, 3, R, R) in [-1, 1] for the VAE and, when an implicit
    captioner conditions the U-Net, `clip` (the CLIP image processor's pixel values), else None."""
    pixels = images_to_pixels(images, resolution)
    clip = None
    if image_processor is not None:
        clip = image_processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
    return {"pixels": pixels, "clip": clip}


def parse_dtype(name: str | None, device: torch.device | str) -> torch.dtype:
    """`--dtype` of the frozen backbone: float32|bfloat16|float16 (fp32/bf16/fp16), or auto (None): bfloat16
    on a GPU that has it, else float16 on a GPU, float32 on the CPU."""
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name in (None, "", "auto"):
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in names:
        raise ValueError(f"--dtype {name!r}: choose auto, float32, bfloat16 or float16")
    return names[name]


def parse_device(name: str | None) -> torch.device:
    """`--device`: cpu, cuda or cuda:N; default cuda when available. ValueError for an unusable one."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    return device


class DiffusionFeatureExtractor(torch.nn.Module):
    """Frozen VAE + U-Net (+ text tower, + CLIP image tower and implicit captioner when present)."""

    def __init__(self, vae, unet, text_encoder, tokenizer, scheduler, resolution: int, image_encoder=None,
                 image_processor=None, captioner=None, timestep: int = DEFAULT_TIMESTEP, seed: int = 0,
                 root: str = ""):
        super().__init__()
        self.vae, self.unet, self.text_encoder = vae, unet, text_encoder
        self.image_encoder, self.captioner = image_encoder, captioner
        self.tokenizer, self.image_processor, self.scheduler = tokenizer, image_processor, scheduler
        self.resolution, self.timestep, self.seed, self.root = int(resolution), int(timestep), int(seed), root
        self.requires_grad_(False).eval()
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.taps = _vae_taps(vae.config) + _unet_taps(unet, self.vae_factor)
        latent = self.resolution // self.vae_factor
        gen = torch.Generator().manual_seed(self.seed)  # on the CPU: the same noise on every machine
        self.register_buffer("noise", torch.randn(1, vae.config.latent_channels, latent, latent, generator=gen),
                             persistent=False)
        self._uncond = None

    @classmethod
    def from_folder(cls, root: Path | str, timestep: int = DEFAULT_TIMESTEP, seed: int = 0,
                    device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> "DiffusionFeatureExtractor":
        """Load a stage-1 or SD-1.x diffusers folder; FileNotFoundError naming what is missing."""
        from ..components.loader import folder_resolution, load_parts

        root = Path(root)
        missing = [n for n in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (root / n).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root}: not a diffusion model folder (missing {', '.join(missing)}/)")
        if not any((root / "unet").glob("*.safetensors")) and not any((root / "unet").glob("*.bin")):
            raise FileNotFoundError(f"{root}/unet: no weights (a components folder; train stage 1 first)")
        parts = load_parts(root, ("vae", "unet", "text_encoder", "tokenizer", "scheduler"))  # one SD-folder loader
        vae, unet, text_encoder = parts["vae"], parts["unet"], parts["text_encoder"]
        tokenizer, scheduler = parts["tokenizer"], parts["scheduler"]
        image_encoder = processor = captioner = None
        if (root / "implicit_captioner").is_dir() and (root / "image_encoder").is_dir():
            captioner = _load_captioner(root / "implicit_captioner")
            if captioner is not None:
                extra = load_parts(root, ("image_encoder", "feature_extractor"))
                image_encoder, processor = extra["image_encoder"], extra["feature_extractor"]
        resolution = folder_resolution(root, unet.config, vae.config)
        ext = cls(vae, unet, text_encoder, tokenizer, scheduler, resolution, image_encoder, processor, captioner,
                  timestep=timestep, seed=seed, root=str(root.resolve()))
        return ext.to(device=device, dtype=dtype) if dtype is not None else ext.to(device)

    @property
    def device(self) -> torch.device:
        return self.noise.device

    @property
    def conditioning(self) -> str:
        return "implicit captioner" if self.captioner is not None else "empty caption"

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """512x512 canvases (or any size) -> (B, 3, R, R) in [-1, 1] at the model's resolution."""
        return images_to_pixels(images, self.resolution)

    def _text_states(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(list(captions), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device)).last_hidden_state

    def prepare(self, images: list[Image.Image]) -> dict[str, torch.Tensor | None]:
        """The CPU side of a forward pass (what DataLoader workers compute): see `prepare_inputs`."""
        return prepare_inputs(images, self.resolution, self.image_processor if self.captioner is not None else None)

    def _context(self, n: int, clip: torch.Tensor | None, captions: list[str] | None) -> torch.Tensor:
        if captions is not None:
            return self._text_states(captions)
        if self._uncond is None or self._uncond.device != self.device:
            self._uncond = self._text_states([""])
        uncond = self._uncond.expand(n, -1, -1)
        if self.captioner is None:
            return uncond
        from ..components import pseudo_context
        dtype = next(self.image_encoder.parameters()).dtype
        embeds = self.image_encoder(pixel_values=clip.to(self.device, dtype)).image_embeds
        t_imp = self.captioner(embeds.to(next(self.captioner.parameters()).dtype))
        return pseudo_context(t_imp, self._uncond)

    @torch.no_grad()
    def forward(self, images: list[Image.Image] | dict, captions: list[str] | None = None) -> dict[str, torch.Tensor]:
        """{tap name: (B, C, H, W) float32} for a batch of PIL images, or for their `prepare`d tensors
        (`captions` overrides the captioner)."""
        prepared = images if isinstance(images, dict) else self.prepare(images)
        n = len(prepared["pixels"])
        feats: dict[str, torch.Tensor] = {}
        handles = []
        vae_dtype = next(self.vae.parameters()).dtype
        for tap in self.taps:
            module = self._module(tap.name)
            last = tap is self.taps[-1]
            if tap.name.startswith("vae."):
                handles.append(module.register_forward_hook(
                    lambda _m, _a, out, name=tap.name: feats.__setitem__(name, out.float())))
            else:
                handles.append(module.resnets[-1].register_forward_pre_hook(
                    lambda _m, args, name=tap.name, stop=last: self._grab(feats, name, args[0], stop)))
        try:
            pixels = prepared["pixels"].to(self.device, vae_dtype, non_blocking=True)
            latents = self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor
            t = torch.full((n,), self.timestep, dtype=torch.long, device=self.device)
            noisy = self.scheduler.add_noise(latents, self.noise.to(latents.dtype).expand_as(latents), t)
            context = self._context(n, prepared.get("clip"), captions).to(next(self.unet.parameters()).dtype)
            try:
                self.unet(noisy.to(context.dtype), t, encoder_hidden_states=context)
            except _Stop:
                pass
        finally:
            for h in handles:
                h.remove()
        return feats

    @staticmethod
    def _grab(feats: dict, name: str, tensor: torch.Tensor, stop: bool) -> None:
        feats[name] = tensor.float()
        if stop:
            raise _Stop

    def _module(self, name: str):
        part, _, index = name.split(".")
        model = self.vae.encoder if part == "vae" else self.unet
        return getattr(model, "down_blocks" if part == "vae" else "up_blocks")[int(index)]

    def describe(self) -> dict:
        """What the run records about its features."""
        return {"diffusion": self.root, "resolution": self.resolution, "timestep": self.timestep,
                "noise_seed": self.seed, "conditioning": self.conditioning,
                "taps": [{"name": t.name, "channels": t.channels, "stride": t.stride} for t in self.taps]}
