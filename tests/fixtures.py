"""Generators that write tiny source datasets in their native on-disk layouts (no binary files in git)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth random texture (compresses like a photo, not like white noise)."""
    w, h = size
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    im = Image.fromarray(small, "RGB").resize((w, h), Image.BILINEAR)
    return im.convert(mode) if mode != "RGB" else im


def blob_mask(size: tuple[int, int], box: tuple[int, int, int, int], value: int = 255) -> Image.Image:
    """An L mask with an ellipse of `value` inside `box` (x0, y0, x1, y1)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    return Image.fromarray(np.where(inside, value, 0).astype(np.uint8), "L")


def save(im: Image.Image, path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None))
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_mvtec(root: Path) -> dict:
    """MVTec AD layout: an RGB category, a gray category, plus every kind of bad input.

    Returns the expected outcome (counts and quarantined paths).
    """
    # bottle: RGB, non-square to exercise letterbox
    for i in range(3):
        save(noise_image((96, 64), seed=i), root / "bottle/train/good" / f"{i:03d}.png")
    save(noise_image((96, 64), seed=10), root / "bottle/test/good/000.png")
    for i in range(2):
        save(noise_image((96, 64), seed=20 + i), root / "bottle/test/broken_large" / f"{i:03d}.png")
        save(blob_mask((96, 64), (10 + 20 * i, 8, 50 + 20 * i, 40)), root / "bottle/ground_truth/broken_large" / f"{i:03d}_mask.png")
    # bad inputs, each in the defect folder of the same category
    truncate(save(noise_image((96, 64), seed=30), root / "bottle/test/contamination/000.png"))
    save(blob_mask((96, 64), (5, 5, 20, 20)), root / "bottle/ground_truth/contamination/000_mask.png")
    save(noise_image((96, 64), seed=31), root / "bottle/test/contamination/001.png")
    save(blob_mask((50, 50), (5, 5, 20, 20)), root / "bottle/ground_truth/contamination/001_mask.png")  # wrong size
    (root / "bottle/test/contamination/002.png").write_bytes(b"")  # zero bytes
    (root / "bottle/test/contamination/._000.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    # screw: single-channel gray
    for i in range(2):
        save(noise_image((64, 64), "L", seed=40 + i), root / "screw/train/good" / f"{i:03d}.png")
    save(noise_image((64, 64), "L", seed=50), root / "screw/test/scratch_head/000.png")
    save(blob_mask((64, 64), (20, 5, 30, 60)), root / "screw/ground_truth/scratch_head/000_mask.png")
    (root / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    (root / "readme.txt").write_text("MVTec AD\n")
    return {
        "records": 9,
        "by_split": {"test": 4, "train": 5},
        "by_label": {"defective": 3, "normal": 6},
        "quarantined": {"bottle/test/contamination/000.png", "bottle/test/contamination/001.png",
                        "bottle/test/contamination/002.png"},
    }


VISA_OBJECTS = {"candle": (80, 60), "pcb1": (70, 70)}


def write_visa_raw(root: Path) -> dict:
    """The raw VisA archive: split_csv/1cls.csv, upper-case .JPG, class-index masks, image_anno.csv."""
    rows = []
    for o_index, (obj, size) in enumerate(VISA_OBJECTS.items()):
        anno = []
        for i in range(3):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            save(noise_image(size, seed=100 * o_index + i), root / rel, "JPEG")
            rows.append([obj, "train" if i < 2 else "test", "normal", rel, ""])
            anno.append([rel, "normal", ""])
        for i in range(2):
            rel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG"
            mrel = f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            save(noise_image(size, seed=100 * o_index + 50 + i), root / rel, "JPEG")
            # class-index mask: values 1 and 2, never 255
            mask = np.zeros((size[1], size[0]), np.uint8)
            mask[10:30, 10:30] = 1
            mask[35:45, 40:60] = 2
            save(Image.fromarray(mask, "L"), root / mrel)
            rows.append([obj, "test", "anomaly", rel, mrel])
            anno.append([rel, "scratch,bent" if i == 0 else "melt", mrel])
        with (root / obj / "image_anno.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows([["image", "label", "mask"], *anno])
    rows.append(["candle", "test", "normal", "candle/Data/Images/Normal/0999.JPG", ""])  # listed, missing
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with (root / "split_csv/1cls.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["object", "split", "label", "image", "mask"], *rows])
    (root / "LICENSE-DATASET").write_text("CC BY 4.0\n")
    return {"records": 10, "by_split": {"test": 6, "train": 4}, "by_label": {"defective": 4, "normal": 6},
            "quarantined": {"candle/Data/Images/Normal/0999.JPG"}}


def write_visa_pytorch(root: Path) -> dict:
    """The converted VisA_pytorch copy: MVTec-like tree with good/bad and ground_truth/bad/<stem>.png."""
    for o_index, (obj, size) in enumerate(VISA_OBJECTS.items()):
        for i in range(2):
            save(noise_image(size, seed=300 + o_index * 10 + i), root / obj / "train/good" / f"{i:04d}.JPG", "JPEG")
        save(noise_image(size, seed=320 + o_index), root / obj / "test/good/0100.JPG", "JPEG")
        save(noise_image(size, seed=340 + o_index), root / obj / "test/bad/000.JPG", "JPEG")
        save(blob_mask(size, (5, 5, 40, 30)), root / obj / "ground_truth/bad/000.png")
    return {"records": 8, "by_split": {"test": 4, "train": 4}, "by_label": {"defective": 2, "normal": 6}}


EXPOSURE_GAMMAS = (1.0, 0.8, 1.25, 0.7, 1.4, 0.9)


def exposure_image(obj: int, exposure: int, size: tuple[int, int] = (96, 96)) -> Image.Image:
    """Object `obj` photographed under lighting `exposure` (0-5): the same texture under another gamma
    and gain, plus sensor noise. Exposures of one object are near duplicates (pHash within 6 bits
    after ingest), different objects are not (16+ bits)."""
    base = np.asarray(noise_image(size, seed=1000 + obj), np.float64) / 255
    rng = np.random.default_rng(obj * 10 + exposure)
    out = base ** EXPOSURE_GAMMAS[exposure] * (0.9 + 0.05 * exposure) + rng.normal(0, 0.01, base.shape)
    return Image.fromarray((np.clip(out, 0, 1) * 255).round().astype(np.uint8), "RGB")


def bridge_images(a: int, b: int, steps: int = 21) -> list[Image.Image]:
    """The frames between object `a` and object `b` (exposure 0), each a near duplicate of the next:
    adding them merges the two objects' groups into one."""
    first, last = (np.asarray(exposure_image(o, 0), np.float64) for o in (a, b))
    return [Image.fromarray(((1 - t) * first + t * last).round().astype(np.uint8), "RGB")
            for t in np.linspace(0, 1, steps)[1:-1]]


def write_multi_exposure(root: Path, objects: range, exposures=lambda obj: 1 + obj % 6) -> dict[str, int]:
    """A Magnetic-Tile-like folder source with no split level: `<class>/obj<NNN>_exp<e>.png`, object
    `obj` photographed `exposures(obj)` times (class `good` for even objects, `crack` for odd ones).
    Returns the image path (relative, without extension) -> object."""
    planted = {}
    for obj in objects:
        cls = "good" if obj % 2 == 0 else "crack"
        for e in range(exposures(obj)):
            rel = f"{cls}/obj{obj:03d}_exp{e}"
            save(exposure_image(obj, e), root / f"{rel}.png")
            planted[rel] = obj
    return planted
