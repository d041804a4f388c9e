"""`imdd-models generate`: sample images from a trained model folder, from a prompt or from an image
(through the implicit captioner: a caption-free prompt, as the paper conditions unlabeled data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image

from imdd_build.errors import RunError

from ..components.captioner import ImplicitCaptioner, pseudo_context
from .samples import RECORD, listed_samples, sample_name


def load_pipeline(model: Path, device: str | torch.device = "cpu", steps: int | None = None):
    """The trained folder as a StableDiffusionPipeline (DDIM sampler) and its implicit captioner; `steps` (the
    sampling steps asked for) is checked against the scheduler's training timesteps before anything loads."""
    from .._compat import quiet_hub_progress

    quiet_hub_progress()
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    model = Path(model)
    if not model.exists():
        raise FileNotFoundError(f"--model {model}: no such folder")
    if not (model / "model_index.json").is_file():
        if (model / "checkpoints").is_dir():  # a run stopped before its end writes no pipeline folder
            raise RunError(f"{model}: a training run without a pipeline folder (stopped early?); make one from its "
                           f"newest checkpoint with `imdd-models export --run {model} --out EXPORT_DIR`")
        raise FileNotFoundError(f"{model}: not a trained model folder (no model_index.json); "
                                "train one with `imdd-models train-diffusion`")
    if steps is not None:
        scheduler = model / "scheduler" / "scheduler_config.json"
        most = json.loads(scheduler.read_text()).get("num_train_timesteps", 1000) if scheduler.is_file() else 1000
        if steps > most:
            raise RunError(f"--steps {steps}: at most {most} (the timesteps the model was trained on)")
    quiet_hub_progress()
    pipe = StableDiffusionPipeline.from_pretrained(str(model), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    captioner = ImplicitCaptioner.from_pretrained(model / "implicit_captioner").to(device).eval()
    return pipe, captioner


@torch.no_grad()
def text_context(pipe, prompts: list[str]) -> torch.Tensor:
    """CLIP last hidden states (B, 77, D) of prompts, as the U-Net was trained on."""
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(pipe.device)
    return pipe.text_encoder(ids).last_hidden_state


@torch.no_grad()
def implicit_context(pipe, captioner, image: Image.Image) -> torch.Tensor:
    """The captioner's pseudo conditioning for an image (1, 77, D)."""
    pixels = pipe.feature_extractor(image.convert("RGB"), return_tensors="pt").pixel_values.to(pipe.device)
    embeds = pipe.image_encoder(pixel_values=pixels.to(pipe.image_encoder.dtype)).image_embeds
    return pseudo_context(captioner(embeds.float()), text_context(pipe, [""]))


def make_grid(images: list[Image.Image]) -> Image.Image:
    """Images in a near-square grid."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid


def generate(model: Path, out: Path, prompt: str | None = None, image: Path | None = None, n: int = 4,
             steps: int = 30, guidance: float = 7.5, seed: int = 0, device: str | None = None) -> dict:
    """Write `n` images and `grid.png` into `out`; conditioned on `prompt` or on `image` via the captioner."""
    if (prompt is None) == (image is None):
        raise RunError("give exactly one of --prompt and --image")
    if image is not None:  # read before the model is loaded: a wrong path fails at once
        try:
            source = Image.open(image)
            source.load()
        except OSError as exc:
            raise RunError(f"{image}: cannot read the image ({exc})") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe, captioner = load_pipeline(model, device, steps)
    uncond = text_context(pipe, [""])
    if image is not None:
        cond = implicit_context(pipe, captioner, source)
    else:
        cond = text_context(pipe, [prompt])
    generator = torch.Generator("cpu").manual_seed(seed)
    result = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, num_images_per_prompt=n,
                  num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="pil")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_earlier_samples(out, n)
    files = []
    for i, im in enumerate(result.images):
        path = out / sample_name(i)
        im.save(path)
        files.append(str(path))
    make_grid(result.images).save(out / "grid.png")
    summary = {"out": str(out), "images": files, "grid": str(out / "grid.png"), "n": n, "steps": steps,
               "guidance": guidance, "seed": seed, "conditioning": "image" if image is not None else "prompt",
               "size": list(result.images[0].size)}
    (out / RECORD).write_text(json.dumps({**summary, "prompt": prompt, "image": str(image) if image else None},
                                                  indent=2) + "\n")
    return summary


def _remove_earlier_samples(out: Path, n: int) -> None:
    """An earlier `generate` into the same folder with a larger --n left samples this run does not overwrite:
    they go (only files its generate.json lists), so the folder holds this run's samples alone."""
    try:
        earlier = listed_samples(out) or set()
    except RunError:  # not a record of ours: nothing of it is removed
        return
    for name in earlier - {sample_name(i) for i in range(n)}:
        (out / name).unlink(missing_ok=True)
