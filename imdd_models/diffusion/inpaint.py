"""`imdd-models inpaint-defect`: paint a described defect into a normal image inside a mask.

Any input size: a square window around the mask (twice its extent, clamped to the image) is resized to
the model's resolution and denoised with the known region re-imposed at every step (blended latent
diffusion: outside the mask the latents are the window's own, noised to the current step). The result
is resized back and composited into the input only inside the slightly dilated, feathered mask, so
pixels away from the mask are the input's own bytes; the whole image is never re-encoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from imdd_build.errors import RunError

from .generate import load_pipeline, text_context


def _read(path: Path, mode: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except OSError as exc:
        raise RunError(f"{path}: cannot read the image ({exc})") from None
    return image.convert(mode)


def load_mask(path: Path, size: tuple[int, int]) -> tuple[Image.Image, dict]:
    """The mask as an "L" image of the image's `size`, and what was done to it (`mask_resized`, `mask_from`).

    A mask of another size is resized (nearest) only when its aspect ratio is the image's to within one pixel;
    otherwise it is refused (stretching would move the defect). A colour mask is read as its luminance (ITU-R
    601: pure red is 76, below the 127 threshold) and `mask_from` says so. A greyscale 0/1 label mask (the
    common label-PNG convention: nothing above 1) counts its 1s as defect (`mask_from`: "0/1 labels")."""
    try:
        raw = Image.open(path)
        raw.load()
    except OSError as exc:
        raise RunError(f"{path}: cannot read the image ({exc})") from None
    colour = raw.mode not in ("L", "1", "I", "I;16", "F", "LA")
    mask = raw.convert("L")
    mw, mh = mask.size
    iw, ih = size
    if (mw, mh) != (iw, ih) and (abs(mh * iw / mw - ih) > 1 or abs(mw * ih / mh - iw) > 1):
        raise RunError(f"{path}: the mask is {mw}x{mh} but the image is {iw}x{ih} (another aspect ratio); give a "
                       f"mask of the image's size")
    resized = (mw, mh) != (iw, ih)
    if resized:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    info = {"mask_resized": resized, "mask_from": f"luminance of a {raw.mode} image" if colour else raw.mode}
    values = np.asarray(mask)
    if not colour and values.max() == 1:
        mask = Image.fromarray((values > 0).astype(np.uint8) * 255, mode="L")
        info["mask_from"] = "0/1 labels"
    if not (np.asarray(mask) > 127).any():
        note = (f"; it was taken from the luminance of a {raw.mode} image (pure red is 76): give a greyscale mask, "
                f"white = defect" if colour else "")
        raise RunError(f"{path}: the mask is empty (no pixel > 127){note}")
    return mask, info


def window(mask: np.ndarray, scale: float = 2.0) -> tuple[int, int, int, int]:
    """A square box around the mask's bounding box (scale x its larger side), clamped into the image."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    side = int(min(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) * scale, max(width, height)))
    side = max(side, min(64, width, height))
    x0 = int(round(min(max(cx - side / 2, 0), max(width - side, 0))))
    y0 = int(round(min(max(cy - side / 2, 0), max(height - side, 0))))
    return x0, y0, min(x0 + side, width), min(y0 + side, height)


@torch.no_grad()
def _denoise(pipe, crop: Image.Image, mask_crop: Image.Image, prompt: str, steps: int, guidance: float,
             seed: int) -> Image.Image:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    pixels = torch.from_numpy(np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
                              / 127.5 - 1.0).permute(2, 0, 1)[None].to(pipe.device, pipe.vae.dtype)
    sf = pipe.vae.config.scaling_factor
    known = pipe.vae.encode(pixels).latent_dist.mean * sf
    m = torch.from_numpy(np.asarray(mask_crop.resize((size, size), Image.Resampling.NEAREST)) > 127).float()
    latent_mask = torch.nn.functional.max_pool2d(m[None, None], pipe.vae_scale_factor).to(pipe.device, known.dtype)
    context = torch.cat([text_context(pipe, [""]), text_context(pipe, [prompt])])
    generator = torch.Generator("cpu").manual_seed(seed)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps)
    latents = torch.randn(known.shape, generator=generator).to(pipe.device, known.dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        noised = scheduler.add_noise(known, torch.randn(known.shape, generator=generator).to(known), t[None])
        latents = latent_mask * latents + (1 - latent_mask) * noised
        eps = pipe.unet(torch.cat([latents] * 2), t, encoder_hidden_states=context.to(latents.dtype)).sample
        uncond, cond = eps.chunk(2)
        latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
    latents = latent_mask * latents + (1 - latent_mask) * known
    decoded = pipe.vae.decode(latents / sf).sample[0].float().clamp(-1, 1)
    array = ((decoded.permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
    return Image.fromarray(array).resize(crop.size, Image.Resampling.BICUBIC)


def inpaint_defect(model: Path, image: Path, mask: Path, prompt: str, out: Path, steps: int = 30,
                   guidance: float = 7.5, seed: int = 0, feather: int = 3, device: str | None = None) -> dict:
    """Write `out/inpainted.png` (the input's size) and `out/inpaint.json`; nothing is written (nor the model
    loaded) before the image and mask are checked."""
    source = _read(image, "RGB")
    mask_image, mask_info = load_mask(Path(mask), source.size)
    binary = np.asarray(mask_image) > 127
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe, _ = load_pipeline(model, device, steps)
    box = window(binary)
    crop, mask_crop = source.crop(box), mask_image.point(lambda v: 255 if v > 127 else 0).crop(box)
    painted = _denoise(pipe, crop, mask_crop, prompt, steps, guidance, seed)
    # Paste only inside the mask grown by `feather` px, with a soft edge inside that band.
    grown = mask_crop.filter(ImageFilter.MaxFilter(2 * feather + 1)) if feather else mask_crop
    alpha = np.minimum(np.asarray(grown.filter(ImageFilter.GaussianBlur(feather / 2)) if feather else grown),
                       np.asarray(grown)).astype(np.float32)[..., None] / 255.0
    blended = np.asarray(painted, np.float32) * alpha + np.asarray(crop, np.float32) * (1 - alpha)
    result = source.copy()
    region = np.where(alpha > 0, np.round(blended), np.asarray(crop)).astype(np.uint8)
    result.paste(Image.fromarray(region), box[:2])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "inpainted.png")
    summary = {"out": str(out), "image": str(out / "inpainted.png"), "size": list(source.size), "window": list(box),
               "mask_pixels": int(binary.sum()), **mask_info, "steps": steps, "guidance": guidance,
               "seed": seed, "feather": feather}
    (out / "inpaint.json").write_text(json.dumps({**summary, "prompt": prompt}, indent=2) + "\n")
    return summary
