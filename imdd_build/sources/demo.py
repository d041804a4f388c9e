"""Built-in demo data: a small procedurally generated MVTec-layout tree (fixed seed, no downloads).

Three products with different file kinds so the demo exercises the normalizer: a gray 8-bit PNG
metal plate (non-square), an RGB JPEG woven fabric, and an RGB PNG ceramic tile. Defects are drawn
the way they look in real data: thin scratches, round holes, soft stains and branching cracks,
each with its pixel mask in `ground_truth/<defect>/NNN_mask.png`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..sourcekit.mvtec_tree import MVTecTreeAdapter
from ..sourcekit.options import AdapterOptions


@dataclass(frozen=True)
class DemoProduct:
    name: str
    size: tuple[int, int]
    mode: str  # "L" or "RGB"
    ext: str  # "png" or "jpg"
    defects: tuple[str, ...]
    base_color: tuple[int, int, int]


PRODUCTS = (
    DemoProduct("metal_plate", (640, 480), "L", "png", ("scratch", "hole"), (150, 150, 150)),
    DemoProduct("woven_fabric", (400, 400), "RGB", "jpg", ("stain", "hole"), (70, 95, 150)),
    DemoProduct("ceramic_tile", (300, 360), "RGB", "png", ("crack", "stain"), (205, 190, 170)),
)
N_TRAIN, N_TEST_GOOD, N_TEST_DEFECT = 6, 2, 3


def _texture(product: DemoProduct, rng: np.random.Generator) -> Image.Image:
    w, h = product.size
    base = np.array(product.base_color, dtype=np.float32)
    noise = rng.normal(0, 9, (h, w, 1)).astype(np.float32)
    if product.name == "woven_fabric":  # a weave: alternating bright warp/weft threads
        yy, xx = np.mgrid[0:h, 0:w]
        noise += (12 * np.sign(np.sin(xx / 2.0) * np.sin(yy / 2.0)))[..., None]
    elif product.name == "metal_plate":  # brushed metal: streaks along x
        noise += rng.normal(0, 6, (h, 1, 1)).astype(np.float32)
    else:  # glazed tile: slow shading
        yy, _ = np.mgrid[0:h, 0:w]
        noise += (10 * np.sin(yy / 40.0))[..., None]
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    im = Image.fromarray(img, "RGB")
    return im.convert("L") if product.mode == "L" else im


def _draw_defect(im: Image.Image, defect: str, rng: np.random.Generator) -> Image.Image:
    """Draw `defect` onto `im` in place; return its binary mask (L, 0/255)."""
    w, h = im.size
    mask = Image.new("L", im.size, 0)
    md = ImageDraw.Draw(mask)
    dark = 30 if im.mode == "L" else (30, 25, 20)
    cx, cy = int(rng.integers(w // 5, 4 * w // 5)), int(rng.integers(h // 5, 4 * h // 5))
    if defect == "scratch":
        length = rng.integers(min(w, h) // 4, min(w, h) // 2)
        angle = rng.uniform(0, np.pi)
        dx, dy = int(np.cos(angle) * length / 2), int(np.sin(angle) * length / 2)
        line = [(cx - dx, cy - dy), (cx + dx, cy + dy)]
        ImageDraw.Draw(im).line(line, fill=235 if im.mode == "L" else (235, 235, 235), width=3)
        md.line(line, fill=255, width=3)
    elif defect == "hole":
        r = int(rng.integers(min(w, h) // 30, min(w, h) // 14))
        ImageDraw.Draw(im).ellipse([cx - r, cy - r, cx + r, cy + r], fill=dark)
        md.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif defect == "stain":
        rx, ry = int(rng.integers(w // 12, w // 6)), int(rng.integers(h // 12, h // 6))
        md.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        stain = Image.new(im.mode, im.size, 60 if im.mode == "L" else (120, 80, 30))
        soft = mask.filter(ImageFilter.GaussianBlur(3)).point(lambda v: int(v * 0.7))
        im.paste(Image.composite(stain, im, soft))
    elif defect == "crack":
        pts = [(cx, cy)]
        for _ in range(int(rng.integers(6, 10))):
            x, y = pts[-1]
            pts.append((int(np.clip(x + rng.integers(-25, 26), 0, w - 1)), int(np.clip(y + rng.integers(8, 22), 0, h - 1))))
        ImageDraw.Draw(im).line(pts, fill=dark, width=2)
        md.line(pts, fill=255, width=2)
    else:
        raise ValueError(f"unknown demo defect {defect!r}")
    return mask


def _save(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        im.save(path, "JPEG", quality=92)
    else:
        im.save(path, "PNG")


def generate_demo(root: Path, seed: int = 0) -> Path:
    """Write the demo tree under `root` (idempotent: same seed, same bytes). Returns root."""
    root = Path(root)
    for p_index, product in enumerate(PRODUCTS):
        rng = np.random.default_rng([seed, p_index])
        cat = root / product.name
        for i in range(N_TRAIN):
            _save(_texture(product, rng), cat / "train" / "good" / f"{i:03d}.{product.ext}")
        for i in range(N_TEST_GOOD):
            _save(_texture(product, rng), cat / "test" / "good" / f"{i:03d}.{product.ext}")
        for defect in product.defects:
            for i in range(N_TEST_DEFECT):
                im = _texture(product, rng)
                mask = _draw_defect(im, defect, rng)
                _save(im, cat / "test" / defect / f"{i:03d}.{product.ext}")
                _save(mask, cat / "ground_truth" / defect / f"{i:03d}_mask.png")
    (root / "README.txt").write_text("imdd demo data: procedurally generated, MVTec AD layout, CC0.\n")
    return root


class DemoAdapter(MVTecTreeAdapter):
    id = "demo"
    expected = "the tree `imdd-build demo` writes (<product>/{train,test}/<class>/ with ground_truth/)"
    Options = AdapterOptions  # no --category: the demo is always built whole
    half_max = False
    flag_missing = False
