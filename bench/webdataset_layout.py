"""WebDataset image layouts on a mixed JPEG/PNG catalog: tar size, write and read speed.

    python bench/webdataset_layout.py [--n 300] [--json-out FILE]

Builds a workspace from the synthetic source of bench/ingest.py (JPEG and PNG products), then writes
WebDataset shards three ways with `imdd_build.shard.write_shards`:

  png (baseline): `--image-ext png`, every JPEG transcoded to PNG (the old default for mixed catalogs);
  stored:         `--image-ext auto`, the stored bytes under one `.jpg` member name (the new default);
  jpg:            `--image-ext jpg`, every PNG re-encoded as JPEG (lossy; for reference).

For each: total tar MB, write images/s, read images/s (`webdataset` with `.decode("pil")`, one
loader, image + mask + class mask decoded to arrays), and whether `datasets.load_dataset` on the
folder infers an Image feature for the image member. Ratios are against the png baseline of the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import captioned_workspace  # noqa: E402  (bench/ingest.py)

from imdd_build.shard import ShardOptions, write_shards  # noqa: E402

LAYOUTS = {"png": "png", "stored": "auto", "jpg": "jpg"}


def read_rate(urls: list[str]) -> tuple[float, int]:
    import webdataset as wds

    start, n = time.perf_counter(), 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"):
        np.asarray(sample.get("png", sample.get("jpg")))
        for member in ("mask.png", "class_mask.png"):
            if member in sample:
                np.asarray(sample[member])
        n += 1
    return n / (time.perf_counter() - start), n


def hf_image_feature(out: Path) -> str:
    """The feature `datasets` infers for the image member ("Image" when it works)."""
    import datasets

    try:
        ds = datasets.load_dataset(str(out), split="train")
    except Exception as exc:  # noqa: BLE001  (report, do not stop the bench)
        return f"error: {type(exc).__name__}"
    member = "png" if "png" in ds.features else "jpg"
    return type(ds.features[member]).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Ingest workers (setup).")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="imdd-wdsbench-"))
    result: dict = {"n": args.n, "cores": os.cpu_count(), "layouts": {}}
    try:
        ws = captioned_workspace(tmp, args.n, args.workers)
        with ws.catalog() as catalog:
            formats = dict(sorted(Counter(fmt for (fmt,) in catalog.iter_fields(["image_format"])).items()))
            result["image_formats"] = formats
            for name, ext in LAYOUTS.items():
                out = tmp / f"out-{name}"
                start = time.perf_counter()
                summary = write_shards(catalog, ws.store(), ShardOptions(out=out, formats=("webdataset",),
                                                                         image_ext=ext, workers=1))
                secs = time.perf_counter() - start
                tars = sorted(str(p) for p in (out / "webdataset").glob("*.tar"))
                rate, total = read_rate(tars)
                assert total == summary["records"], (name, total)
                result["layouts"][name] = {
                    "image_ext": summary["image_ext"], "mb": round(sum(Path(t).stat().st_size for t in tars) / 1e6, 1),
                    "write_images_per_s": round(summary["records"] / secs, 1), "read_images_per_s": round(rate, 1),
                    "hf_feature": hf_image_feature(out)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = result["layouts"]["png"]
    print(f"{'layout':<8} {'member':>6} {'MB':>7} {'x':>5} {'write/s':>8} {'x':>5} {'read/s':>7} {'x':>5}  datasets")
    for name, row in result["layouts"].items():
        print(f"{name:<8} {row['image_ext']:>6} {row['mb']:>7.1f} {row['mb'] / base['mb']:>5.2f} "
              f"{row['write_images_per_s']:>8.1f} {row['write_images_per_s'] / base['write_images_per_s']:>5.2f} "
              f"{row['read_images_per_s']:>7.1f} {row['read_images_per_s'] / base['read_images_per_s']:>5.2f}  "
              f"{row['hf_feature']}")
    print(f"n={args.n} image formats={result['image_formats']} cores={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
