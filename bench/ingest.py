"""Ingest throughput: our full ingest vs a bare Pillow loop on the same synthetic files, in one run.

    python bench/ingest.py [--n 300] [--workers 2] [--json-out bench/ingest.json]

The source mixes 1000x1000 and 700x700 images, 70% JPEG / 30% PNG, a third of them defective with a
mask (MVTec layout). (a) is `imdd_build.ingest.ingest` + template captions (normalize, masks,
content store, SQLite catalog); (b) decodes, converts to RGB, resizes to 512 with an area filter,
encodes JPEG q95 and writes, in one process per worker. Both report images/s per core.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imdd_build.caption import caption_workspace  # noqa: E402
from imdd_build.ingest import ingest  # noqa: E402
from imdd_build.normalize import NormalizeOptions  # noqa: E402
from imdd_build.registry import get_source  # noqa: E402
from imdd_build.workspace import Workspace  # noqa: E402


def make_source(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        size = 1000 if i % 2 else 700
        small = rng.integers(0, 255, (size // 10, size // 10, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        ext = "jpg" if i % 10 < 7 else "png"
        defective = i % 3 == 0
        cls = "dent" if defective else "good"
        path = root / "part" / ("test" if defective else "train") / cls / f"{i:05d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, quality=90) if ext == "jpg" else im.save(path)
        if defective:
            mask = np.zeros((size, size), np.uint8)
            mask[size // 4: size // 3, size // 5: size // 2] = 255
            mpath = root / "part/ground_truth/dent" / f"{i:05d}_mask.png"
            mpath.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(mpath)
        files.append(path)
    return files


def pillow_one(args: tuple[Path, Path]) -> None:
    src, dst = args
    with Image.open(src) as im:
        im = im.convert("RGB").resize((512, 512), Image.Resampling.BOX)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=95)
    dst.write_bytes(buf.getvalue())


def bench_pillow(files: list[Path], out: Path, workers: int) -> float:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(f, out / f"{i}.jpg") for i, f in enumerate(files)]
    start = time.perf_counter()
    if workers <= 1:
        for job in jobs:
            pillow_one(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(pillow_one, jobs, chunksize=8))
    return time.perf_counter() - start


def bench_ours(root: Path, ws_dir: Path, workers: int) -> float:
    ws = Workspace(ws_dir)
    start = time.perf_counter()
    ingest(ws, "demo", root, get_source("demo"), NormalizeOptions(), workers=workers)
    with ws.catalog() as catalog:
        caption_workspace(catalog)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="imdd-bench-"))
    try:
        files = make_source(tmp / "src", args.n)
        bench_pillow(files[:20], tmp / "warm", 1)  # warm the page cache and imports
        pillow_s = bench_pillow(files, tmp / "pillow", args.workers)
        ours_s = bench_ours(tmp / "src", tmp / "ws", args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {"imdd ingest (+masks, catalog, captions)": ours_s, "bare Pillow loop": pillow_s}
    per_core = {name: args.n / secs / args.workers for name, secs in rows.items()}
    print(f"{'pipeline':<42} {'seconds':>8} {'img/s':>8} {'img/s/core':>11}")
    for name, secs in rows.items():
        print(f"{name:<42} {secs:>8.2f} {args.n / secs:>8.1f} {per_core[name]:>11.1f}")
    ratio = per_core["imdd ingest (+masks, catalog, captions)"] / per_core["bare Pillow loop"]
    print(f"ratio imdd / bare Pillow: {ratio:.2f}x  (n={args.n}, workers={args.workers}, cores={os.cpu_count()})")
    result = {"n": args.n, "workers": args.workers, "seconds": rows, "per_core": per_core,
              "ratio_vs_pillow": ratio}
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
