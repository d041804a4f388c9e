"""The trained model folder: a complete diffusers Stable Diffusion pipeline plus our extras.

    OUT/model_index.json  unet/  vae/  text_encoder/  tokenizer/  scheduler/  feature_extractor/  image_encoder/
                                                     -> StableDiffusionPipeline.from_pretrained(OUT)
    OUT/implicit_captioner/  components.json (+ unet_weights: "ema" | "raw", step)
    OUT/clip_text_encoder/  clip_tokenizer/   copied from the components folder when it has them: the CLIP text
                                              tower of stage 2's CLIP ensemble (components/writer.py); the
                                              pipeline loader ignores folders model_index.json does not name

The U-Net and the captioner are always a pair of the same kind: both EMA (when EMA was on) or both raw.
`train-diffusion` writes it into its --out at the end; `imdd-models export --run DIR [--step N] --out DIR`
writes it from any checkpoint (the newest by default), e.g. after an interrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

from imdd_build.errors import RunError


def export_pipeline(out: Path, comps, unet, captioner, ema=None, step: int | None = None) -> Path:
    """Save the pipeline folder into `out`: the EMA U-Net and EMA captioner when `ema` is given (it covers the
    U-Net's parameters, then the captioner's), else the raw pair."""
    params = list(unet.parameters()) + list(captioner.parameters())
    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    try:
        write_pipeline(out, comps, unet, captioner, "ema" if ema is not None else "raw", step)
    finally:
        if ema is not None:
            ema.restore(params)
    return Path(out)


def write_pipeline(out: Path, comps, unet, captioner, weights: str, step: int | None = None) -> Path:
    from .._compat import hf_ready
    hf_ready()
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    pipe = StableDiffusionPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                                   unet=unet, scheduler=comps.scheduler, safety_checker=None,
                                   feature_extractor=comps.image_processor, image_encoder=comps.image_encoder,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(out))
    captioner.save_pretrained(out / "implicit_captioner")
    copy_clip_text(Path(comps.root), out)
    manifest = dict(comps.manifest)
    manifest["unet_weights"] = weights
    if step is not None:
        manifest["step"] = step
    (out / "components.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def copy_clip_text(src: Path, out: Path) -> list[str]:
    """Copy `clip_text_encoder/` and `clip_tokenizer/` of folder `src` into `out` (the names copied); a stale
    copy in `out` that `src` lacks is removed (`out` then says what `src` says). Nothing when both are the same
    folder."""
    import shutil

    from ..components.writer import CLIP_TEXT, CLIP_TOKENIZER
    src, out = Path(src), Path(out)
    if src.resolve() == out.resolve():
        return [name for name in (CLIP_TEXT, CLIP_TOKENIZER) if (src / name).is_dir()]
    copied = []
    for name in (CLIP_TEXT, CLIP_TOKENIZER):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        if (src / name).is_dir():
            shutil.copytree(src / name, out / name)
            copied.append(name)
    return copied


def export_checkpoint(run: Path, out: Path, step: int | None = None, components: Path | None = None,
                      raw: bool = False) -> dict:
    """`imdd-models export`: the pipeline folder of checkpoint `step` of `run` (the newest by default)."""
    import torch

    from ..components import ImplicitCaptioner, load_components
    from ..components.writer import CLIP_TEXT
    from .._compat import hf_ready
    from .checkpoint import damaged_as_error, find_checkpoint, read_state

    hf_ready()
    from diffusers import UNet2DConditionModel

    run, out = Path(run), Path(out)
    ckpt = find_checkpoint(run, step)
    state = read_state(ckpt)
    if not (ckpt / "unet").is_dir():
        raise RunError(f"{ckpt}: a checkpoint of the earlier flat layout; resume the run once to rewrite it")
    if out.resolve() == run.resolve():
        raise RunError(f"--out {out}: the run folder itself; export into another folder")
    from ..components.writer import OWN_FILES
    from ..outdir import refuse_foreign
    refuse_foreign(out, OWN_FILES | {"model_index.json", "safety_checker"}, "a pipeline folder")
    if components is None:
        recorded = state.get("components")
        candidates = [Path(recorded)] if recorded else []
        candidates.append(run)  # a finished run's folder holds the frozen parts too
        components = next((c for c in candidates if (c / "vae").is_dir() and (c / "scheduler").is_dir()), None)
        if components is None:
            raise RunError(f"{ckpt}: its components folder {recorded!r} is not there; give --components")
    kind = "raw" if raw or not (ckpt / "unet_ema").is_dir() else "ema"
    suffix = "_ema" if kind == "ema" else ""
    comps = load_components(components)
    with damaged_as_error(ckpt):
        unet = UNet2DConditionModel.from_pretrained(str(ckpt / f"unet{suffix}"))
        captioner = ImplicitCaptioner.from_pretrained(ckpt / f"implicit_captioner{suffix}")
    with torch.no_grad():
        write_pipeline(out, comps, unet.eval(), captioner.eval(), kind, state.get("step"))
    return {"out": str(out), "run": str(run), "checkpoint": str(ckpt), "step": state.get("step"),
            "weights": kind, "components": str(components),
            "clip_text_encoder": (out / CLIP_TEXT).is_dir()}
