"""An optional on-disk cache of the frozen features of a fixed training set (`train-seg --cache-features DIR`).

The features are a deterministic function of the image and the feature settings (diffusion folder,
resolution, timestep, fixed noise), so an epoch after the first can read them instead of running the VAE and
the U-Net again. Files are keyed by the record key, its augmented view (augment.py: each flip/scale/crop
is its own entry, so with scale jitter the cache rarely hits; `--augment flip` keeps two views per image)
and a fingerprint of the settings (including the backbone's dtype), stored as float16
safetensors (so cached features are rounded to fp16). Whether it pays depends on the model size against the
disk: `bench/seg_feature_cache.py` measures both on this machine; by default nothing is cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class FeatureCache:
    def __init__(self, folder: Path, extractor):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.extractor = extractor
        settings = {**extractor.describe(), "dtype": str(next(extractor.vae.parameters()).dtype)}
        self.fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(f"{self.fingerprint}\x00{key}".encode()).hexdigest()[:32]
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, keys: list[str], prepared: dict) -> dict[str, torch.Tensor]:
        """Features of a batch: `keys` name its entries (record key + view), `prepared` is its
        `extractor.prepare` output; the missing ones are computed in one extractor call and stored."""
        found: dict[int, dict[str, torch.Tensor]] = {}
        missing = []
        for i, key in enumerate(keys):
            p = self.path(key)
            if p.is_file():
                found[i] = load_file(str(p))
                self.hits += 1
            else:
                missing.append(i)
        if missing:
            self.misses += len(missing)
            subset = {k: (v[missing] if v is not None else None) for k, v in prepared.items()}
            feats = self.extractor(subset)
            for j, i in enumerate(missing):
                one = {k: v[j].to(torch.float16).contiguous().cpu() for k, v in feats.items()}
                p = self.path(keys[i])
                p.parent.mkdir(exist_ok=True)
                tmp = p.with_name(p.name + ".tmp")
                save_file(one, str(tmp))
                os.replace(tmp, p)
                found[i] = one
        device = self.extractor.device
        return {k: torch.stack([found[i][k] for i in range(len(keys))]).float().to(device)
                for k in found[0]}
