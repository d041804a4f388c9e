"""The reference models that `seg_real.py` compares stage 2 with, each writing a predictions folder that the same
`imdd-models evaluate` scores: a small U-Net trained from scratch on stage 2's shots for the same CPU seconds
(`baseline`), and a training-free nearest-normal-patch kNN on raw pixels or on the frozen stage-1 features
(`knn_baseline`). Conventions shared by both (`write_predictions`): the anomaly map on the 512 canvas, the
image score its maximum, the label by a threshold, maps/NNNNN.npy in test-split order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def outside_set(amap, record: dict, value: float | None):
    """`amap` with the pixels outside the record's content box set to `value` (None: the minimum inside)."""
    from imdd_models.segmentation.validation import content_mask

    box = (record.get("geometry") or {}).get("content_box")
    if box:
        inside = content_mask(box, amap.shape[-1])
        amap[~inside] = amap[inside].min() if value is None else value
    return amap


def write_predictions(out: Path, maps, threshold: float) -> None:
    """A predictions folder from (record, anomaly map, defect type or None) in test-split order."""
    import numpy as np

    (out / "maps").mkdir(parents=True, exist_ok=True)
    lines = []
    for r, amap, defect_type in maps:
        name = f"{len(lines):05d}.npy"
        np.save(out / "maps" / name, amap)
        score = float(amap.max())
        lines.append({"key": r["key"], "image_score": score, "label": "defective" if score >= threshold else "normal",
                      "defect_type": defect_type if score >= threshold else None, "anomaly_map": f"maps/{name}"})
    (out / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def standardise(pixels, boxes, resolution: int):
    """(B, 3, R, R) pixels in [-1, 1] -> each image standardised within its content box (mean 0, std 0.5 there,
    0 outside): the baseline sees relative brightness, as an inspection camera's auto-exposure would give."""
    import torch

    from imdd_models.segmentation.validation import content_mask

    out = torch.zeros_like(pixels)
    for i, box in enumerate(boxes):
        inside = torch.from_numpy(content_mask(box, resolution))
        values = pixels[i][:, inside]
        out[i][:, inside] = (values - values.mean()) / (values.std() + 1e-3) * 0.5
    return out


def baseline(data: Path, selection: Path, classes: str, resolution: int, budget_cpu_s: float, out: Path,
             seed: int = 0, raw: bool = False) -> dict:
    """Train the from-scratch U-Net for `budget_cpu_s` CPU seconds and write its predictions folder."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    from imdd_models.components.loader import images_to_pixels
    from imdd_models.data import ReadStats, iter_records
    from imdd_models.segmentation.vocabulary import canonical_type

    names = [canonical_type(c) or c for c in classes.split(",")]
    keys = set(json.loads(selection.read_text())["keys"])

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self, w=16, k=len(names) + 1):
            super().__init__()
            self.e = nn.ModuleList([block(3, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 8 * w)])
            self.d = nn.ModuleList([block(12 * w, 4 * w), block(6 * w, 2 * w), block(3 * w, w)])
            self.out = nn.Conv2d(w, k, 1)

        def forward(self, x):
            skips = []
            for i, enc in enumerate(self.e):
                x = enc(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for dec in self.d:
                x = dec(torch.cat([F.interpolate(x, scale_factor=2), skips.pop()], 1))
            return self.out(x)

    def class_target(r) -> np.ndarray:
        """(512, 512) int64: 0 background, 1 + index into `names`."""
        y = np.zeros((512, 512), np.int64)
        types = list(r.get("defect_types") or [])
        cm = r.get("class_mask") if r.get("has_class_mask", True) is not False else None
        m = r.get("mask") if r.get("has_mask", True) is not False else None
        if cm is not None:
            cm = np.asarray(cm.convert("L") if hasattr(cm, "convert") else cm)
            for i, t in enumerate(types):
                if t in names:
                    y[cm == i + 1] = names.index(t) + 1
        if (cm is None or not y.any()) and m is not None and len(types) == 1 and types[0] in names:
            y[np.asarray(m.convert("L")) > 127] = names.index(types[0]) + 1
        return y

    def pixels(records):
        x = images_to_pixels([r["image"] for r in records], resolution)
        return x if raw else standardise(x, [(r.get("geometry") or {}).get("content_box") for r in records],
                                         resolution)

    train = [r for r in iter_records(str(data), "train", None, ReadStats()) if r["key"] in keys]
    x = pixels(train)
    y = torch.from_numpy(np.stack([class_target(r) for r in train]))[:, None].float()
    y = F.interpolate(y, size=(resolution, resolution), mode="nearest")[:, 0].long()
    torch.manual_seed(seed)
    net = UNet()
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    weight = torch.ones(len(names) + 1)
    weight[1:] = 5.0  # defects are a few percent of the pixels
    gen = torch.Generator().manual_seed(seed)
    c0, steps = time.process_time(), 0
    while time.process_time() - c0 < budget_cpu_s:
        idx = torch.randint(0, len(x), (8,), generator=gen)
        xb, yb = x[idx], y[idx]
        if steps % 2:
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = F.cross_entropy(net(xb), yb, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    train_cpu = time.process_time() - c0
    net.eval()
    def maps():
        with torch.no_grad():
            for r in iter_records(str(data), "test", None, ReadStats()):
                p = net(pixels([r])).softmax(1)
                p = F.interpolate(p, size=(512, 512), mode="bilinear", align_corners=False)[0].numpy()
                amap = outside_set((1 - p[0]).astype(np.float32), r, 0.0)
                mass = [(p[k + 1] * (amap >= 0.5)).sum() for k in range(len(names))]
                yield r, amap, names[int(np.argmax(mass))]

    write_predictions(out, maps(), 0.5)
    return {"steps": steps, "train_cpu_s": round(train_cpu, 1), "train_samples": len(train),
            "input": "raw" if raw else "standardised"}


def knn_baseline(data: Path, stage1: Path, out: Path, features: str, normals: int = 300, seed: int = 0) -> dict:
    """A training-free reference: each test patch's distance to its nearest patches of `normals` normal training
    images (PatchCore's idea without its coreset), on raw pixels or on the frozen stage-1 features. Same map,
    score and threshold conventions as the U-Net; it names no defect type. What the features are worth with no
    learning on top: the diffusion row against the pixel row."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from imdd_models.data import ReadStats, iter_records
    from imdd_models.segmentation.features import DiffusionFeatureExtractor

    ext = DiffusionFeatureExtractor.from_folder(stage1)
    side = ext.resolution // 8  # one patch per 8 model pixels

    def embed(records) -> torch.Tensor:
        """(B, C, side, side) patch features."""
        if features == "pixels":  # 16 px grey patches at stride 8, brightness removed (texture and contrast)
            grey = ext.pixels([r["image"] for r in records]).mean(1, keepdim=True)
            p = F.unfold(grey, 16, stride=8, padding=4)
            return (p - p.mean(1, keepdim=True)).view(len(records), 256, side, side)
        maps = ext([r["image"] for r in records])  # every tap at stride <= 16, at stride 8, 3x3-averaged
        keep = [m for m in maps.values() if m.shape[-1] >= ext.resolution // 16]
        return torch.cat([F.avg_pool2d(F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False),
                                       3, 1, 1) for m in keep], 1)

    def batches(records):
        for i in range(0, len(records), 16):
            yield records[i:i + 16]

    gen = torch.Generator().manual_seed(seed)
    pool = [r for r in iter_records(str(data), "train", None, ReadStats()) if r["label"] == "normal"]
    pick = torch.randperm(len(pool), generator=gen)[:normals].tolist()
    bank = torch.cat([embed(b) for b in batches([pool[i] for i in sorted(pick)])])
    bank = bank.permute(0, 2, 3, 1).reshape(-1, bank.shape[1])
    mu, sd = bank.mean(0), bank.std(0) + 1e-6
    proj = torch.randn(bank.shape[1], 128, generator=gen) / 128 ** 0.5 if bank.shape[1] > 128 else None

    def norm(x: torch.Tensor) -> torch.Tensor:
        x = (x - mu) / sd
        return x @ proj if proj is not None else x

    bank = norm(bank)[torch.randperm(len(bank), generator=gen)[:20000]]

    def score_maps(records):
        for b in batches(records):
            f = embed(b)
            q = norm(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
            d = torch.cdist(q, bank).topk(3, largest=False).values.mean(1).view(len(b), 1, side, side)
            d = F.interpolate(d, size=(512, 512), mode="bilinear", align_corners=False)[:, 0].numpy()
            for r, amap in zip(b, d):
                yield r, outside_set(amap.astype(np.float32), r, None)
    # the image threshold: the 95th percentile of the validation normals' scores (a 5% false-alarm rate)
    valid = [r for r in iter_records(str(data), "validation", None, ReadStats()) if r["label"] == "normal"]
    threshold = float(np.quantile([float(m.max()) for _, m in score_maps(valid)], 0.95)) if valid else float("inf")
    test = score_maps(list(iter_records(str(data), "test", None, ReadStats())))
    write_predictions(out, ((r, amap, None) for r, amap in test), threshold)
    return {"features": features, "normals": len(pick), "bank_patches": len(bank), "threshold": round(threshold, 4)}
