"""Generated data and a tiny diffusion folder for the segmentation tests (tests/models/test_seg_*.py).

`write_seg_shards`: a Parquet shard folder in the `imdd-build shard` layout with drawn defects on textured
512x512 canvases: single-type records with a binary mask, two-type records with a `class_mask`, records with
boxes only, records with image labels only, and normal records. Captions name the defects the way the
template captioner does. `write_diffusion_folder`: tiny components plus a randomly initialised tiny U-Net and
implicit captioner saved with weights (a stage-1 model folder; stage-1 training is not needed for the tests).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

SIZE = 512
DRAW = {  # how each test class looks: (pixel colour, shape)
    "scratch": ((235, 235, 235), "line"),
    "hole": ((20, 20, 20), "disc"),
    "stain": ((150, 90, 30), "blob"),
    "crack": ((40, 40, 40), "zigzag"),
}


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _draw(canvas: Image.Image, mask: Image.Image, kind: str, value: int, rng: np.random.Generator) -> tuple:
    color, shape = DRAW[kind]
    d, m = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    cx, cy = (int(v) for v in rng.integers(110, SIZE - 110, 2))
    if shape == "line":
        dx, dy = (int(v) for v in rng.integers(-90, 90, 2))
        pts = [(cx - dx, cy - dy), (cx + dx, cy + dy)]
        d.line(pts, fill=color, width=9)
        m.line(pts, fill=value, width=9)
    elif shape == "disc":
        r = int(rng.integers(25, 45))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        m.ellipse([cx - r, cy - r, cx + r, cy + r], fill=value)
    elif shape == "blob":
        rx, ry = (int(v) for v in rng.integers(40, 80, 2))
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=color)
        m.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=value)
    else:
        pts = [(cx + 30 * ((-1) ** i), cy - 80 + 32 * i) for i in range(6)]
        d.line(pts, fill=color, width=7)
        m.line(pts, fill=value, width=7)
    bbox = Image.fromarray((np.asarray(mask) == value).astype(np.uint8)).getbbox()
    return {"label": kind, "x0": float(bbox[0]), "y0": float(bbox[1]), "x1": float(bbox[2]), "y1": float(bbox[3])}


def _record(key: str, split: str, types: list[str], kind: str, rng: np.random.Generator) -> dict:
    base = rng.normal(128, 12, (SIZE, SIZE, 1)).clip(0, 255).astype(np.uint8).repeat(3, axis=2)
    canvas = Image.fromarray(base, "RGB")
    cmask = Image.new("L", (SIZE, SIZE), 0)
    boxes = [_draw(canvas, cmask, t, i + 1, rng) for i, t in enumerate(types)]
    binary = Image.fromarray(((np.asarray(cmask) > 0) * 255).astype(np.uint8), "L")
    if types:
        named = " and a ".join(types)
        caption = f"An inspection image of a metal plate showing a {named} defect. The rest is intact."
    else:
        caption = "An inspection image of a metal plate with no visible defects and no scratches or holes."
    row = {"key": key, "image": {"bytes": _png(canvas), "path": f"{key}.png"}, "mask": None, "class_mask": None,
           "caption": caption, "source": "segtest", "split": split, "label": "defective" if types else "normal",
           "defect_types": types, "boxes": [], "has_mask": False, "has_class_mask": False}
    if kind in ("mask", "class_mask"):
        row["mask"] = {"bytes": _png(binary), "path": f"{key}.mask.png"}
        row["has_mask"] = True
        row["boxes"] = boxes
    if kind == "class_mask":
        row["class_mask"] = {"bytes": _png(cmask), "path": f"{key}.class_mask.png"}
        row["has_class_mask"] = True
    if kind == "boxes":
        row["boxes"] = boxes
    return row


def write_seg_shards(out: Path, per_class: int = 6, seed: int = 0, classes=("scratch", "hole", "stain"),
                     split: str = "train") -> Path:
    """A shard folder of generated records (see the module docstring); returns `out`."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in classes:
        for i in range(per_class):
            kind = "boxes" if i == per_class - 1 else ("labels" if i == per_class - 2 else "mask")
            rows.append(_record(f"segtest/{c}/{i:03d}", split, [c], kind, rng))
    for i, (a, b) in enumerate(zip(classes, classes[1:] + classes[:1])):
        rows.append(_record(f"segtest/pair/{i:03d}", split, [a, b], "class_mask", rng))
    for i in range(max(2, per_class // 2)):
        rows.append(_record(f"segtest/good/{i:03d}", split, [], "none", rng))
    return _write_rows(Path(out), rows, split)


def _write_rows(out: Path, rows: list[dict], split: str) -> Path:
    (out / "data").mkdir(parents=True, exist_ok=True)
    box = pa.struct([("label", pa.string()), ("x0", pa.float32()), ("y0", pa.float32()), ("x1", pa.float32()),
                     ("y1", pa.float32())])
    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("key", pa.string()), ("image", img), ("mask", img), ("class_mask", img),
                        ("caption", pa.string()), ("source", pa.string()), ("split", pa.string()),
                        ("label", pa.string()), ("defect_types", pa.list_(pa.string())), ("boxes", pa.list_(box)),
                        ("has_mask", pa.bool_()), ("has_class_mask", pa.bool_())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "data" / f"{split}-00000-of-00001.parquet")
    return out


def write_diffusion_folder(components: Path, out: Path, seed: int = 0) -> Path:
    """Tiny components + a random tiny U-Net and implicit captioner with weights: a stage-1 model folder."""
    import torch
    from diffusers import UNet2DConditionModel

    from imdd_models.components import load_components
    shutil.copytree(components, out)
    comps = load_components(out)
    torch.manual_seed(seed)
    UNet2DConditionModel.from_config(comps.unet_config).save_pretrained(str(out / "unet"))
    comps.new_captioner().save_pretrained(out / "implicit_captioner")
    return out


def write_two_class_set(out: Path, per_class: int, normals: int, seed: int, split: str,
                        classes=("scratch", "hole")) -> Path:
    """A shard folder of single-defect records with binary masks (`per_class` of each class) and `normals`
    normal records on the same textured background: a set on which learning is measurable."""
    rng = np.random.default_rng(seed)
    rows = [_record(f"two/{c}/{i:03d}", split, [c], "mask", rng) for i in range(per_class) for c in classes]
    rows += [_record(f"two/good/{i:03d}", split, [], "none", rng) for i in range(normals)]
    return _write_rows(Path(out), rows, split)


def write_train_validation_set(out: Path, validation: tuple[int, int, int]) -> Path:
    """A two-class shard folder with a `train` split (6 per class, 3 normal, seed 0) and a `validation` split of
    (per class, normals, seed): held-out records for calibration and step selection."""
    write_two_class_set(out, per_class=6, normals=3, seed=0, split="train")
    per_class, normals, seed = validation
    return write_two_class_set(out, per_class=per_class, normals=normals, seed=seed, split="validation")


def add_clip_text_tower(stage1: Path, classes=("scratch", "hole", "stain"), fit_per_class: int = 6,
                        seed: int = 0) -> Path:
    """Give a tiny stage-1 folder the CLIP text tower of the open-vocabulary ensemble (`clip_text_encoder/`),
    one that knows the test classes' words as a pretrained CLIP knows real ones: a random tiny text tower whose
    projection is fitted (least squares) so that each class's prompt embedding points at the mean mask-pooled
    image embedding of drawn examples of that class (centred over the classes), from the folder's own image
    tower. What the ensemble does with such a tower is what the tests check; the fitting images are generated
    from `seed` (tests use other seeds for their data)."""
    import torch
    from torch.nn import functional as F
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from imdd_models.components.presets import TINY_TEXT
    from imdd_models.segmentation.clip_head import CLIP_TEXT, ClipClassifier
    from imdd_models.segmentation.text import prompts_for
    torch.manual_seed(seed)
    vision_dim = json_load(stage1 / "image_encoder" / "config.json")["projection_dim"]
    CLIPTextModelWithProjection(CLIPTextConfig(**{**TINY_TEXT, "projection_dim": vision_dim})).save_pretrained(
        str(stage1 / CLIP_TEXT))
    clip = ClipClassifier.from_folder(stage1)
    rng = np.random.default_rng(seed)
    means, pooled_text = [], []
    with torch.no_grad():
        for c in classes:
            regions = []
            for i in range(fit_per_class):
                row = _record(f"fit/{c}/{i}", "fit", [c], "mask", rng)
                image = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
                mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"]))) > 0
                logits = torch.from_numpy(np.where(mask, 10.0, -10.0)).float()[None, None]
                dense = clip.dense([image])
                w = F.interpolate(logits, size=dense.shape[-2:], mode="bilinear", align_corners=False).sigmoid()
                regions.append(F.normalize(torch.einsum("bqhw,bdhw->bqd", w, dense)[0, 0], dim=-1))
            means.append(F.normalize(torch.stack(regions).mean(0), dim=-1))
            ids = clip.tokenizer(prompts_for(c), padding="max_length", max_length=clip.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            pooled_text.append(clip.text_model.text_model(ids).pooler_output.mean(0))
        targets = torch.stack(means)
        targets = targets - targets.mean(0, keepdim=True)
        weight = torch.linalg.lstsq(torch.stack(pooled_text), targets).solution.T
        clip.text_model.text_projection.weight.copy_(weight)
    clip.text_model.save_pretrained(str(stage1 / CLIP_TEXT))
    return stage1


def json_load(path: Path) -> dict:
    import json
    return json.loads(Path(path).read_text())
