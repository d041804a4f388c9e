"""Does caching the frozen stage-2 features pay? Extraction (VAE encode + one U-Net pass at t=50) against
reading the cached fp16 features, per image, on this machine; plus the cache size per image of SD1.5's taps.

    python bench/seg_feature_cache.py [--diffusion DIR] [--images 32] [--batch 8]

Without --diffusion a tiny stage-1 folder (random weights, the tests' preset) is built in a temp folder.
The baseline is extraction in the same run; the ratio is extraction time / cache read time (> 1: the cache
pays from the second epoch on, as long as the cache fits on the disk: see the size column).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from imdd_models import hf_ready  # noqa: E402

hf_ready()  # transformers/diffusers importable beside a torchvision that cannot load
from PIL import Image  # noqa: E402

from imdd_models.components.presets import SD15_UNET  # noqa: E402
from imdd_models.segmentation.cache import FeatureCache  # noqa: E402
from imdd_models.segmentation.features import DiffusionFeatureExtractor, describe_taps  # noqa: E402


def _tiny_folder(tmp: Path) -> Path:
    from imdd_models.components import write_components
    from seg_fixtures import write_diffusion_folder
    write_components("tiny", tmp / "components")
    return write_diffusion_folder(tmp / "components", tmp / "stage1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--diffusion", type=Path)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="seg-cache-bench-"))
    try:
        folder = args.diffusion or _tiny_folder(tmp)
        ext = DiffusionFeatureExtractor.from_folder(folder, device=args.device)
        records = [{"key": f"bench/{i}", "image": Image.new("RGB", (512, 512), (i * 7 % 255, 90, 140))}
                   for i in range(args.images)]
        batches = [records[i:i + args.batch] for i in range(0, len(records), args.batch)]
        ext([r["image"] for r in batches[0]])  # warm-up
        t = time.perf_counter()
        for b in batches:
            ext([r["image"] for r in b])
        extract = (time.perf_counter() - t) / len(records)
        cache = FeatureCache(tmp / "cache", ext)
        prepared = [ext.prepare([r["image"] for r in b]) for b in batches]
        for b, p in zip(batches, prepared):
            cache.get([r["key"] for r in b], p)  # fills it
        t = time.perf_counter()
        for b, p in zip(batches, prepared):
            cache.get([r["key"] for r in b], p)
        read = (time.perf_counter() - t) / len(records)
        size = sum(p.stat().st_size for p in (tmp / "cache").rglob("*.safetensors")) / len(records)
        sd_taps = describe_taps(SD15_UNET, {"block_out_channels": [128, 256, 512, 512]})
        sd_bytes = sum(t.channels * (512 // t.stride) ** 2 * 2 for t in sd_taps)
        print("| folder | resolution | device | extract ms/img | cache read ms/img | ratio | cache KiB/img |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {'tiny (random)' if not args.diffusion else folder} | {ext.resolution} | {args.device} | "
              f"{extract * 1e3:.1f} | {read * 1e3:.1f} | {extract / read:.2f}x | {size / 1024:.0f} |")
        print(f"\nSD1.5 taps at 512 (fp16): {sd_bytes / 2**20:.1f} MiB per image "
              f"({sd_bytes * 2000 / 2**30:.0f} GiB for 200 shots x 10 classes)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
