"""A small two-source catalog with planted duplicates, for the publish / dedupe / upload tests.

* `demo`: the built-in procedural demo (42 images, train 18 / test 24).
* `twin` (registered in a temporary sources.yaml, demo adapter, MVTec layout, good images only):
  - `ceramic_tile/train/good/000.png` = demo `ceramic_tile/test/good/000.png` byte for byte
    (exact duplicate across sources, train vs test: leakage, the twin train copy is dropped);
  - `metal_plate/train/good/001.jpg` = demo `metal_plate/test/hole/000.png` re-encoded as JPEG q70
    (near duplicate, train vs test: leakage, dropped);
  - `ceramic_tile/test/good/002.png` = demo `ceramic_tile/test/stain/000.png` shifted by one pixel
    (near duplicate, both test: a group, no leakage, nothing dropped);
  - `ceramic_tile/test/good/003.png` = demo `ceramic_tile/train/good/003.png` byte for byte
    (leakage the other way round: the *demo* train copy is dropped);
  - `metal_plate/train/good/010.png`: a fresh image (no duplicate).

Near copies are made from images with visible structure (a hole, a stain): the demo's defect-free
textures are nearly flat at pHash resolution, so their hashes are unstable (see the README).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from imdd_build.registry import DEFAULT_PATH
from imdd_build.sources.demo import generate_demo

TWIN = {"name": "Twin (planted duplicates)", "adapter": "demo", "license": "CC-BY-4.0",
        "redistribution": "allowed", "annotation": "mask", "official_split": ["train", "test"],
        "citation": "@misc{twin2025,\n  title={Twin}, year={2025}}\n", "domain": "mixed",
        "products": {"metal_plate": "metal_surface", "woven_fabric": "textile", "ceramic_tile": "ceramic_tile"}}

EXPECTED_DROPPED = {"twin/ceramic_tile/train/good/000", "twin/metal_plate/train/good/001",
                    "demo/ceramic_tile/train/good/003"}


def write_sources(path: Path, **twin_overrides) -> Path:
    """The repository's sources.yaml plus the `twin` source (with overrides, e.g. redistribution)."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["sources"]["twin"] = {**TWIN, **twin_overrides}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_twin(demo_root: Path, root: Path) -> Path:
    def copy(src: str, dst: str) -> Path:
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(demo_root / src, root / dst))

    copy("ceramic_tile/test/good/000.png", "ceramic_tile/train/good/000.png")
    copy("ceramic_tile/train/good/003.png", "ceramic_tile/test/good/003.png")
    with Image.open(demo_root / "metal_plate/test/hole/000.png") as im:
        (root / "metal_plate/train/good").mkdir(parents=True, exist_ok=True)
        im.save(root / "metal_plate/train/good/001.jpg", "JPEG", quality=70)
    with Image.open(demo_root / "ceramic_tile/test/stain/000.png") as im:
        arr = np.asarray(im)
        shifted = np.concatenate([arr[:, :1], arr[:, :-1]], axis=1)  # one pixel to the right
        Image.fromarray(shifted).save(root / "ceramic_tile/test/good/002.png")
    rng = np.random.default_rng(7)
    fresh = np.clip(rng.normal(120, 40, (480, 640)), 0, 255).astype(np.uint8)
    Image.fromarray(fresh, "L").save(root / "metal_plate/train/good/010.png")
    return root


def build_workspace(base: Path, cli_cls) -> tuple[Path, Path]:
    """Ingest demo + twin into `base/ws` (with `base/sources.yaml`), caption; return (workspace, sources)."""
    sources = write_sources(base / "sources.yaml")
    demo_root = generate_demo(base / "demo-src")
    twin_root = write_twin(demo_root, base / "twin-src")
    cli = cli_cls(base / "ws")
    cli("ingest", "demo", "--root", str(demo_root), "--workers", "1")
    cli("ingest", "twin", "--root", str(twin_root), "--workers", "1")
    cli("caption")
    return base / "ws", sources
