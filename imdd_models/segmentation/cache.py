"""An optional on-disk cache of the frozen features of a fixed training set (`train-seg --cache-features DIR`).

The features are a deterministic function of the image and the feature settings (diffusion folder,
resolution, timestep, fixed noise), so an epoch after the first can read them instead of running the VAE and
the U-Net again. Files are keyed by the record key and a fingerprint of the settings, stored as float16
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
        self.fingerprint = hashlib.sha256(json.dumps(extractor.describe(), sort_keys=True).encode()).hexdigest()[:16]
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(f"{self.fingerprint}\x00{key}".encode()).hexdigest()[:32]
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, records: list[dict]) -> dict[str, torch.Tensor]:
        """Features of `records` (by key), computing and storing the missing ones in one extractor call."""
        found: dict[int, dict[str, torch.Tensor]] = {}
        missing = []
        for i, r in enumerate(records):
            p = self.path(r["key"])
            if p.is_file():
                found[i] = load_file(str(p))
                self.hits += 1
            else:
                missing.append(i)
        if missing:
            self.misses += len(missing)
            feats = self.extractor([records[i]["image"] for i in missing])
            for j, i in enumerate(missing):
                one = {k: v[j].to(torch.float16).contiguous().cpu() for k, v in feats.items()}
                p = self.path(records[i]["key"])
                p.parent.mkdir(exist_ok=True)
                tmp = p.with_name(p.name + ".tmp")
                save_file(one, str(tmp))
                os.replace(tmp, p)
                found[i] = one
        device = self.extractor.device
        return {k: torch.stack([found[i][k] for i in range(len(records))]).float().to(device)
                for k in found[0]}
