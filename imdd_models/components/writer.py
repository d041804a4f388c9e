"""`imdd-models components`: write the frozen parts and the configs of one preset as a diffusers-layout folder.

    DIR/vae/  text_encoder/  tokenizer/  image_encoder/  feature_extractor/  scheduler/
        unet/config.json  implicit_captioner/config.json  components.json
        [clip_text_encoder/  clip_tokenizer/]

`tiny` builds every part randomly initialised from a seed (deterministic); `sd15` loads the frozen parts
with `from_pretrained` from hub ids or local folders. Only the U-Net and the captioner are trained later.

`clip_text_encoder/` (a `CLIPTextModelWithProjection`) and `clip_tokenizer/` are the CLIP *text* tower of the
same CLIP model as `image_encoder/`: stage 2's `predict` classifies mask-pooled `image_encoder` features against
it (ODISE's frozen CLIP classifier, segmentation/clip_head.py), which needs both towers in one joint space (the
diffusion `text_encoder/`, SD's CLIP-L without projection, is not in it). `--clip-text` (`clip_text=`) chooses:
`auto` (default) loads it from the image tower's own hub id / folder when that tower is pretrained and writes
nothing when the image tower is random (tiny, sd15-random): a random text tower would not share a joint space
with anything and would only add noise to predictions. `random` writes a random one anyway (tests), `none`
writes none, any other value is a hub id / folder of a CLIP model whose text tower (with projection) is used.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from imdd_build.errors import RunError

from .._compat import hf_ready
from ..outdir import refuse_foreign
from .captioner import ImplicitCaptioner
from .presets import SD_SCHEDULER, get_preset
from .tokenizer import write_clip_tokenizer

FORMAT_VERSION = 1
MANIFEST = "components.json"
# What a components folder holds (a rerun over an interrupted one is taken; anything else there is refused).
OWN_FILES = {MANIFEST, "vae", "text_encoder", "image_encoder", "tokenizer", "scheduler", "unet", "implicit_captioner",
             "feature_extractor", "clip_text_encoder", "clip_tokenizer"}
# The folders stage 2 reads (segmentation/clip_head.py's CLIP_TEXT, CLIP_TOKENIZER; not imported: no torch-heavy
# segmentation import from here).
CLIP_TEXT = "clip_text_encoder"
CLIP_TOKENIZER = "clip_tokenizer"
CLIP_BPE = "open_clip bpe_simple_vocab_16e6 (CLIP BPE)"


def _pretrained(cls, ident: str, subfolder: str, **load):
    """`cls.from_pretrained(ident, **load)`, also trying the usual subfolder of a whole pipeline repo or folder."""
    local = Path(ident)
    if local.is_dir():  # a pipeline folder (the part in its subfolder) or the part's own folder
        folder = local / subfolder if (local / subfolder).is_dir() else local
        try:
            return cls.from_pretrained(str(folder), **load)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"{folder}: cannot load {cls.__name__} ({str(exc).splitlines()[0]})") from None
    if ident.startswith(("/", "./", "../", "~")):  # a local path that is not there: not worth a Hub look-up
        raise FileNotFoundError(f"{ident}: cannot load {cls.__name__}: no such folder "
                                "(a Hub model id looks like org/name)")
    errors = []
    for kwargs in ({"subfolder": subfolder}, {}):  # a pipeline repo first: a bare repo id may load empty
        try:
            return cls.from_pretrained(ident, **kwargs, **load)
        except Exception as exc:  # noqa: BLE001  (OSError, HTTP errors, offline): report them all at once
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    raise FileNotFoundError(f"{ident}: cannot load {cls.__name__} ({'; '.join(dict.fromkeys(errors))})")


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
    return CLIP_BPE


def _clip_text_tower(mode: str, preset: dict, image_encoder_id: str | None, vision, seed: int):
    """The CLIP text tower (with projection) matching the image tower `vision`: (model or None, where it came
    from, why there is none). See the module docstring for `mode`."""
    hf_ready()
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    mode = (mode or "").strip() or "auto"
    dim = vision.config.projection_dim
    if mode == "none":
        return None, None, "--clip-text none"
    if mode == "random":
        torch.manual_seed(seed + len(("vae", "text_encoder", "image_encoder")))  # after the parts' own seeds
        model = CLIPTextModelWithProjection(CLIPTextConfig(**{**preset["clip_text"], "projection_dim": dim}))
        return model, "random", None
    explicit = mode != "auto"
    source = mode if explicit else image_encoder_id
    if source is None:
        return None, None, ("the image tower is random: a random CLIP text tower would only add noise to "
                            "predict's CLIP ensemble (--clip-text random writes one anyway, e.g. for tests)")
    try:
        model, info = _pretrained(CLIPTextModelWithProjection, source, CLIP_TEXT, output_loading_info=True)
        missing = sorted(info.get("missing_keys") or [])
        if missing:  # e.g. an image-only CLIPVisionModelWithProjection folder: it would "load" random weights
            raise FileNotFoundError(f"{source}: no CLIP text tower with projection in it ({len(missing)} weights "
                                    f"missing, e.g. {missing[0]})")
    except FileNotFoundError as exc:
        if explicit:
            raise RunError(f"--clip-text {mode}: {str(exc).splitlines()[0]}") from None
        return None, None, f"no CLIP text tower beside the image tower ({str(exc).splitlines()[0]})"
    if model.config.projection_dim != dim:
        why = (f"{source}: CLIP text projection {model.config.projection_dim} != image_encoder's {dim} "
               "(not the same CLIP model)")
        if explicit:
            raise RunError(f"--clip-text {mode}: {why}")
        return None, None, why
    return model, source, None


def _write_clip_tokenizer(out: Path, source: str, max_length: int) -> str:
    """The CLIP text tower's own tokenizer (its `clip_tokenizer/` subfolder or the model's root), else CLIP's
    BPE (the same for every OpenAI CLIP model; offline)."""
    hf_ready()
    from transformers import CLIPTokenizer
    if source != "random":
        try:
            tokenizer = _pretrained(CLIPTokenizer, source, CLIP_TOKENIZER)
            tokenizer.model_max_length = min(int(tokenizer.model_max_length), max_length)
            tokenizer.save_pretrained(str(out))
            return source
        except FileNotFoundError:
            pass
    write_clip_tokenizer(out, model_max_length=max_length)
    return CLIP_BPE


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
                     image_encoder: str | None = None, seed: int = 0, clip_text: str = "auto") -> dict:
    """Write the components folder for `preset_name`; returns a summary (also stored as components.json).
    `clip_text`: auto | none | random | a CLIP model's hub id or folder (the module docstring)."""
    from .._compat import quiet_hub_progress

    quiet_hub_progress()
    from diffusers import DDPMScheduler

    preset = get_preset(preset_name)
    out = Path(out)
    refuse_foreign(out, OWN_FILES, "a components folder")
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
    clip_model, clip_from, clip_reason = _clip_text_tower(clip_text, preset, image_encoder, parts["image_encoder"],
                                                          seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, model in parts.items():
        model.save_pretrained(str(out / name))
    clip_tokenizer_from = None
    for stale in (CLIP_TEXT, CLIP_TOKENIZER):  # a folder written again: no tower of an earlier run stays behind
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)
    if clip_model is not None:
        clip_model.save_pretrained(str(out / CLIP_TEXT))
        clip_tokenizer_from = _write_clip_tokenizer(out / CLIP_TOKENIZER, clip_from,
                                                    int(clip_model.config.max_position_embeddings))
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
                "image_size": preset["image_size"],
                "seed": seed if random_init or clip_from == "random" else None,
                "vae": vae or "random", "text_encoder": text_encoder or "random",
                "image_encoder": image_encoder or "random", "tokenizer": tokenizer_from,
                "text_dim": text_dim, "image_embed_dim": captioner.config["in_dim"],
                "latent_channels": parts["vae"].config.latent_channels,
                "vae_scale_factor": 2 ** (len(parts["vae"].config.block_out_channels) - 1),
                "scaling_factor": parts["vae"].config.scaling_factor,
                "clip_text_encoder": clip_from, "clip_tokenizer": clip_tokenizer_from,
                "clip_projection_dim": clip_model.config.projection_dim if clip_model is not None else None,
                "clip_text_reason": clip_reason}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if clip_model is not None:
        parts[CLIP_TEXT] = clip_model
    # `auto` with a pretrained image tower that has no text tower beside it: predict's CLIP ensemble will be off
    # (a random image tower, or --clip-text none, is the user's choice: no warning).
    auto = ((clip_text or "").strip() or "auto") == "auto"
    warnings = [f"no {CLIP_TEXT}/ written: {clip_reason}; predict's CLIP ensemble needs one "
                "(--clip-text HUB_ID_OR_DIR, or predict --clip DIR)"] if clip_reason and image_encoder and auto else []
    return {"out": str(out), **manifest, "warnings": warnings,
            "params": {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}}
