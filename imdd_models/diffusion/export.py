"""The trained model folder: a complete diffusers Stable Diffusion pipeline plus our extras.

    OUT/model_index.json  unet/ (EMA weights when EMA is on)  vae/  text_encoder/  tokenizer/  scheduler/
        feature_extractor/  image_encoder/      -> StableDiffusionPipeline.from_pretrained(OUT)
    OUT/implicit_captioner/  components.json  checkpoints/  logs/
"""

from __future__ import annotations

import json
from pathlib import Path


def export_pipeline(out: Path, comps, unet, captioner, ema=None) -> Path:
    """Save the pipeline folder (the EMA U-Net when given) and the captioner into `out`."""
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    if ema is not None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
    try:
        pipe = StableDiffusionPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                                       unet=unet, scheduler=comps.scheduler, safety_checker=None,
                                       feature_extractor=comps.image_processor, image_encoder=comps.image_encoder,
                                       requires_safety_checker=False)
        pipe.save_pretrained(str(out))
    finally:
        if ema is not None:
            ema.restore(unet.parameters())
    captioner.save_pretrained(out / "implicit_captioner")
    manifest = dict(comps.manifest)
    manifest["unet_weights"] = "ema" if ema is not None else "raw"
    (out / "components.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out
