"""`imdd-models components`: write the frozen parts and the configs of one preset as a diffusers-layout folder.

    DIR/vae/  text_encoder/  tokenizer/  image_encoder/  feature_extractor/  scheduler/
        unet/config.json  implicit_captioner/config.json  components.json

`tiny` builds every part randomly initialised from a seed (deterministic); `sd15` loads the frozen parts
with `from_pretrained` from hub ids or local folders. Only the U-Net and the captioner are trained later.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from imdd_build.errors import RunError

from .._compat import hf_ready
from .captioner import ImplicitCaptioner
from .presets import SD_SCHEDULER, get_preset
from .tokenizer import write_clip_tokenizer

FORMAT_VERSION = 1
MANIFEST = "components.json"


def _pretrained(cls, ident: str, subfolder: str):
    """`cls.from_pretrained(ident)`, also trying the usual subfolder of a whole pipeline repo or folder."""
    local = Path(ident)
    if local.is_dir():  # a pipeline folder (the part in its subfolder) or the part's own folder
        folder = local / subfolder if (local / subfolder).is_dir() else local
        try:
            return cls.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"{folder}: cannot load {cls.__name__} ({str(exc).splitlines()[0]})") from None
    errors = []
    for kwargs in ({"subfolder": subfolder}, {}):  # a pipeline repo first: a bare repo id may load empty
        try:
            return cls.from_pretrained(ident, **kwargs)
        except Exception as exc:  # noqa: BLE001  (OSError, HTTP errors, offline): report them all at once
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    raise FileNotFoundError(f"{ident}: cannot load {cls.__name__} ({'; '.join(errors)})")


def _random_parts(preset: dict, seed: int) -> dict:
    hf_ready()
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    parts = {}
    for i, (name, build) in enumerate((
        ("vae", lambda: AutoencoderKL(**preset["vae"])),
        ("text_encoder", lambda: CLIPTextModel(CLIPTextConfig(**preset["text_encoder"]))),
        ("image_encoder", lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**preset["image_encoder"]))),
    )):
        torch.manual_seed(seed + i)  # each part from its own seed: same seed, same bytes
        parts[name] = build()
    return parts


def _pretrained_parts(vae: str, text_encoder: str, image_encoder: str) -> dict:
    hf_ready()
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection

    return {"vae": _pretrained(AutoencoderKL, vae, "vae"),
            "text_encoder": _pretrained(CLIPTextModel, text_encoder, "text_encoder"),
            "image_encoder": _pretrained(CLIPVisionModelWithProjection, image_encoder, "image_encoder")}


def _write_tokenizer(out: Path, text_encoder_id: str | None) -> str:
    """The text model's own tokenizer when it has one locally or on the Hub, else CLIP's (offline)."""
    hf_ready()
    if text_encoder_id:
        from transformers import CLIPTokenizer
        try:
            tokenizer = _pretrained(CLIPTokenizer, text_encoder_id, "tokenizer")
            if tokenizer.model_max_length > 77:  # some folders do not say; CLIP's text tower has 77 positions
                tokenizer.model_max_length = 77
            tokenizer.save_pretrained(str(out))
            return text_encoder_id
        except FileNotFoundError:
            pass
    write_clip_tokenizer(out)
    return "open_clip bpe_simple_vocab_16e6 (CLIP BPE)"


def _write_feature_extractor(out: Path, image_size: int, image_encoder_id: str | None) -> None:
    from .._compat import image_processor_class
    CLIPImageProcessor = image_processor_class()
    if image_encoder_id:
        try:
            _pretrained(CLIPImageProcessor, image_encoder_id, "feature_extractor").save_pretrained(str(out))
            return
        except FileNotFoundError:
            pass
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(str(out))


def unet_config(preset: dict, cross_attention_dim: int) -> dict:
    """The U-Net's diffusers config for a preset, its context width taken from the text tower."""
    hf_ready()
    from diffusers import __version__ as diffusers_version
    config = {"_class_name": "UNet2DConditionModel", "_diffusers_version": diffusers_version, **preset["unet"]}
    config["cross_attention_dim"] = cross_attention_dim
    return config


def write_components(preset_name: str, out: Path, vae: str | None = None, text_encoder: str | None = None,
                     image_encoder: str | None = None, seed: int = 0) -> dict:
    """Write the components folder for `preset_name`; returns a summary (also stored as components.json)."""
    from .._compat import quiet_hub_progress

    quiet_hub_progress()
    from diffusers import DDPMScheduler
  # our own progress and summary only
    preset = get_preset(preset_name)
    out = Path(out)
    random_init = isinstance(preset["vae"], dict)  # tiny, sd15-random: configs, not hub ids
    if random_init and any((vae, text_encoder, image_encoder)):
        if not all((vae, text_encoder, image_encoder)):
            raise RunError(f"--preset {preset_name} builds random parts: give all of "
                           "--vae/--text-encoder/--image-encoder or none")
        parts = _pretrained_parts(vae, text_encoder, image_encoder)
    elif random_init:
        parts = _random_parts(preset, seed)
    else:
        vae, text_encoder, image_encoder = (vae or preset["vae"], text_encoder or preset["text_encoder"],
                                            image_encoder or preset["image_encoder"])
        parts = _pretrained_parts(vae, text_encoder, image_encoder)
    out.mkdir(parents=True, exist_ok=True)
    for name, model in parts.items():
        model.save_pretrained(str(out / name))
    tokenizer_from = _write_tokenizer(out / "tokenizer", text_encoder)
    _write_feature_extractor(out / "feature_extractor", preset["image_size"], image_encoder)
    DDPMScheduler(**SD_SCHEDULER).save_pretrained(str(out / "scheduler"))
    text_dim = parts["text_encoder"].config.hidden_size
    (out / "unet").mkdir(exist_ok=True)
    (out / "unet" / "config.json").write_text(json.dumps(unet_config(preset, text_dim), indent=2, sort_keys=True) + "\n")
    captioner = ImplicitCaptioner(parts["image_encoder"].config.projection_dim, 256, text_dim)
    (out / "implicit_captioner").mkdir(exist_ok=True)
    (out / "implicit_captioner" / "config.json").write_text(json.dumps(captioner.config, indent=2) + "\n")
    manifest = {"format_version": FORMAT_VERSION, "preset": preset_name, "resolution": preset["resolution"],
                "image_size": preset["image_size"], "seed": seed if random_init else None,
                "vae": vae or "random", "text_encoder": text_encoder or "random",
                "image_encoder": image_encoder or "random", "tokenizer": tokenizer_from,
                "text_dim": text_dim, "image_embed_dim": captioner.config["in_dim"],
                "latent_channels": parts["vae"].config.latent_channels,
                "vae_scale_factor": 2 ** (len(parts["vae"].config.block_out_channels) - 1),
                "scaling_factor": parts["vae"].config.scaling_factor}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {"out": str(out), **manifest,
            "params": {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}}
