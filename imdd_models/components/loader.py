"""`load_components(dir)`: the frozen parts of a components folder (or a trained model folder, which has
the same layout), with the few encoders training, precompute and generation share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .._compat import hf_ready
from ..jsonfile import read_json
from .captioner import ImplicitCaptioner
from .writer import MANIFEST

REQUIRED = ("vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor", "scheduler", "unet")


def _part_classes() -> dict:
    """Subfolder of the SD diffusers layout -> the class that loads it."""
    hf_ready()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    from .._compat import image_processor_class
    return {"vae": AutoencoderKL, "unet": UNet2DConditionModel, "text_encoder": CLIPTextModel,
            "tokenizer": CLIPTokenizer, "scheduler": DDPMScheduler, "image_encoder": CLIPVisionModelWithProjection,
            "feature_extractor": image_processor_class()}


def load_parts(root: Path, names: tuple[str, ...], dtype: torch.dtype | None = None) -> dict:
    """The one loader of SD-layout folders (components, trained model, any SD-1.x pipeline folder): each named
    subfolder with its class's `from_pretrained` (models in `dtype` when given, loaded so: no cast afterwards);
    models come frozen (eval, no grad). Used by `load_components` and by the segmentation feature extractor."""
    from .._compat import quiet_hub_progress

    quiet_hub_progress()
    classes = _part_classes()
    parts = {}
    for name in names:
        is_model = isinstance(classes[name], type) and issubclass(classes[name], torch.nn.Module)
        kwargs = {"dtype": dtype} if is_model and dtype is not None else {}
        parts[name] = classes[name].from_pretrained(str(Path(root) / name), **kwargs)
        if is_model:
            parts[name].requires_grad_(False).eval()
    return parts


def folder_resolution(root: Path, unet_config, vae_config) -> int:
    """components.json's resolution, else the U-Net's latent size times the VAE's factor."""
    manifest = Path(root) / MANIFEST
    resolution = read_json(manifest).get("resolution") if manifest.is_file() else None
    return int(resolution or unet_config["sample_size"] * 2 ** (len(vae_config["block_out_channels"]) - 1))



def images_to_pixels(images: list[Image.Image], size: int, flip: bool = False) -> torch.Tensor:
    """RGB images resized (bicubic) to size x size, optionally mirrored, as a (B, 3, size, size) tensor in [-1, 1]."""
    arrays = []
    for im in images:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        if flip:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arrays.append(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

@dataclass
class Components:
    """Frozen VAE, CLIP text and image towers (eval mode, no grad), tokenizer, image processor,
    the DDPM training scheduler, the U-Net config and the captioner config."""

    root: Path
    manifest: dict
    vae: Any
    text_encoder: Any
    tokenizer: Any
    image_encoder: Any
    image_processor: Any
    scheduler: Any
    unet_config: dict
    captioner_config: dict

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Components":
        for model in (self.vae, self.text_encoder, self.image_encoder):
            model.to(device) if dtype is None else model.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """Token ids (B, 77), padded and truncated as SD does."""
        return self.tokenizer(list(captions), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    @torch.no_grad()
    def text_states(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states (B, 77, D) used as U-Net context, pooled EOS embedding (B, D) = e_T)."""
        out = self.text_encoder(input_ids.to(self.device))
        return out.last_hidden_state, out.pooler_output

    @torch.no_grad()
    def image_embeds(self, images: list[Image.Image]) -> torch.Tensor:
        """CLIP image embeddings (B, 512) of PIL images, the captioner's input."""
        pixels = self.image_processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        dtype = next(self.image_encoder.parameters()).dtype
        return self.image_encoder(pixel_values=pixels.to(self.device, dtype)).image_embeds

    def pixels(self, images: list[Image.Image], flip: bool = False) -> torch.Tensor:
        """Images resized to the training resolution as a (B, 3, R, R) tensor in [-1, 1]."""
        return images_to_pixels(images, self.resolution, flip=flip)

    @torch.no_grad()
    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latent means (deterministic: the mean, not a sample)."""
        dtype = next(self.vae.parameters()).dtype
        dist = self.vae.encode(pixels.to(self.device, dtype)).latent_dist
        return dist.mean * self.scaling_factor

    def new_unet(self):
        """A randomly initialised U-Net of the preset's config (seed it first)."""
        hf_ready()
        from diffusers import UNet2DConditionModel
        return UNet2DConditionModel.from_config(self.unet_config)

    def new_captioner(self) -> ImplicitCaptioner:
        return ImplicitCaptioner(**self.captioner_config)

    def load_unet(self):
        """The trained U-Net of a model folder (train-diffusion --out; EMA weights when EMA was on), frozen."""
        hf_ready()
        from diffusers import UNet2DConditionModel
        if not any((self.root / "unet").glob("diffusion_pytorch_model*")):
            raise FileNotFoundError(f"{self.root}: no trained U-Net weights in unet/ (a components folder?)")
        unet = UNet2DConditionModel.from_pretrained(str(self.root / "unet"))
        return unet.requires_grad_(False).eval().to(self.device)

    def load_captioner(self) -> ImplicitCaptioner:
        """The trained implicit captioner of a model folder, frozen."""
        captioner = ImplicitCaptioner.from_pretrained(self.root / "implicit_captioner")
        return captioner.requires_grad_(False).eval().to(self.device)


def load_components(root: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Components:
    """Load a components (or trained model) folder; FileNotFoundError naming what is missing."""
    root = Path(root)
    missing = [name for name in REQUIRED if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: not a components folder (missing {', '.join(missing)}/); "
                                "write one with `imdd-models components`")
    manifest = read_json(root / MANIFEST) if (root / MANIFEST).is_file() else {}
    parts = load_parts(root, ("vae", "text_encoder", "image_encoder", "tokenizer", "feature_extractor", "scheduler"),
                       dtype=dtype)
    vae, text_encoder, image_encoder = parts["vae"], parts["text_encoder"], parts["image_encoder"]
    unet_config = json.loads((root / "unet" / "config.json").read_text())
    if "resolution" not in manifest:  # a pipeline folder from elsewhere: the U-Net's size says it
        manifest["resolution"] = folder_resolution(root, unet_config, vae.config)
    cap_dir = root / "implicit_captioner"
    captioner_config = (json.loads((cap_dir / "config.json").read_text()) if (cap_dir / "config.json").is_file()
                        else {"in_dim": image_encoder.config.projection_dim, "hidden_dim": 256,
                              "out_dim": text_encoder.config.hidden_size})
    comps = Components(root=root, manifest=manifest, vae=vae, text_encoder=text_encoder,
                       tokenizer=parts["tokenizer"], image_encoder=image_encoder,
                       image_processor=parts["feature_extractor"], scheduler=parts["scheduler"],
                       unet_config=unet_config, captioner_config=captioner_config)
    return comps.to(device)
