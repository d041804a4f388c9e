"""Training samples from either latent shards (precomputed) or image shards (encoded online).

Both give `input_ids` (77 caption tokens) and either `latents` (precomputed, scaled VAE means) or
`pixels` + `clip_pixels` (the VAE and the CLIP image tower then run on the batch in the training loop).
Flips are drawn from a hash of (seed, epoch, key), so they need no RNG state to resume.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from imdd_build.errors import RunError

from ..data import DataSource, decode_record
from ..data.stream import ShardStream, StreamConfig, seeded
from .precompute import latent_sample
from .resume import check_same_components


def _flip(seed: int, epoch: int, key: str) -> bool:
    return seeded(seed, "flip", epoch, key) % 2 == 1


class LatentTransform:
    """Latent row -> sample; picks the cached flipped latent (with the flipped image's CLIP embedding, in
    shards that have it) on a seeded coin."""

    def __init__(self, seed: int, flip: bool):
        self.seed, self.flip = seed, flip

    def __call__(self, row: dict, epoch: int) -> dict:
        use_flip = self.flip and bool(row.get("latent_flip")) and _flip(self.seed, epoch, row["key"])
        return {**latent_sample(row, use_flip), "key": row["key"]}


class ImageTransform:
    """Image row -> decoded, resized pixels in [-1, 1], CLIP-processed pixels and caption tokens."""

    def __init__(self, resolution: int, tokenizer, image_processor, seed: int, flip: bool):
        self.resolution, self.tokenizer, self.image_processor = resolution, tokenizer, image_processor
        self.seed, self.flip = seed, flip

    def __call__(self, row: dict, epoch: int) -> dict:
        from PIL import Image
        record = decode_record(row)
        image = record["image"].convert("RGB")
        if self.flip and _flip(self.seed, epoch, record["key"]):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        resized = image.resize((self.resolution, self.resolution), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        clip_pixels = self.image_processor(image, return_tensors="pt").pixel_values[0]
        ids = self.tokenizer(record["caption"], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids[0]
        return {"pixels": pixels, "clip_pixels": clip_pixels, "input_ids": ids, "key": record["key"]}


def make_loader(source: DataSource, comps, stream: StreamConfig, batch_size: int, num_workers: int,
                flip: bool) -> DataLoader:
    """The per-rank DataLoader over an endless ShardStream of latent or image samples."""
    if source.kind == "latents":
        made_with = source.manifest.get("components", {}) if source.manifest else {}
        if made_with.get("resolution") not in (None, comps.resolution):
            raise RunError(f"{source.spec}: latents at resolution {made_with.get('resolution')}, components "
                           f"train at {comps.resolution}")
        check_same_components(source.spec, made_with, comps.manifest)
        transform = LatentTransform(stream.seed, flip)
    else:
        transform = ImageTransform(comps.resolution, comps.tokenizer, comps.image_processor, stream.seed, flip)
    dataset = ShardStream(source, stream, transform)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, drop_last=True,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())
