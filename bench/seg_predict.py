"""How fast does `imdd-models predict` write a predictions folder, with and without writer threads?

    python bench/seg_predict.py --model SEG_MODEL --data SHARDS [--split test] [--classes a,b,...]
                                [--writers 0,2] [--threads 2]

Each `--writers` setting runs the real CLI (`predict --no-clip --writers N`) into its own temporary folder,
timed (wall and CPU); the folders must be byte-identical (the writers only move work off the main thread).
Then the overlays of the first run are encoded again at zlib level 6 (Pillow's default) and level 1 (what
predict writes) to show what the compression level costs. A table and a JSON last line; the ratio is each
setting's images/s against `--writers 0` measured in the same run. Any model folder works, e.g. one that
`bench/seg_real.py --work DIR` left (DIR/seg400_seed0 with DIR/shards).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from proctree import timed_cli  # noqa: E402  (bench/proctree.py: what a child process costs)

ROOT = Path(__file__).resolve().parent.parent


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="A train-seg model folder.")
    ap.add_argument("--data", required=True, help="Shard source to predict on.")
    ap.add_argument("--split", default="test")
    ap.add_argument("--classes", help="Names to predict (default: the model's trained classes).")
    ap.add_argument("--writers", default="0,2", help="Comma list of --writers settings; the first is the baseline.")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS).")
    args = ap.parse_args()
    classes = args.classes or ",".join(json.loads((args.model / "seg_config.json").read_text())["classes"])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    settings = [int(w) for w in args.writers.split(",")]
    rows, folders = [], {}
    with tempfile.TemporaryDirectory(prefix="seg-predict-") as tmp:
        for w in settings:
            out = Path(tmp) / f"writers{w}"
            summary, wall, cpu = timed_cli(["imdd_models", "predict", "--model", str(args.model), "--classes",
                                            classes, "--data", args.data, "--split", args.split, "--out", str(out),
                                            "--no-clip", "--writers", str(w)], env, Path(tmp) / "commands.log", ROOT)
            rows.append({"writers": w, "images": summary["images"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "images_per_s": round(summary["images"] / wall, 2)})
            folders[w] = _files(out)
        identical = all(folders[w] == folders[settings[0]] for w in settings)
        from PIL import Image
        overlays = sorted((Path(tmp) / f"writers{settings[0]}" / "overlays").glob("*.png"))[:50]
        images = [Image.open(p).convert("RGB") for p in overlays]
        png = {}
        for level in (6, 1):
            t, size = time.perf_counter(), 0
            for im in images:
                buf = io.BytesIO()
                im.save(buf, "PNG", compress_level=level)
                size += buf.tell()
            png[level] = {"ms_per_overlay": round((time.perf_counter() - t) / max(1, len(images)) * 1000, 2),
                          "kb_per_overlay": round(size / max(1, len(images)) / 1024, 1)}
    base = rows[0]["images_per_s"]
    print(f"\npredict on {args.data} ({args.split}), {rows[0]['images']} images, {args.threads} torch threads, "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| --writers | wall s | CPU s | images/s | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['writers']} | {r['wall_s']} | {r['cpu_s']} | {r['images_per_s']} | "
              f"{r['images_per_s'] / base:.2f}x |")
    print(f"\nfolders byte-identical across settings: {identical}")
    print(f"overlay PNG, zlib level 6 (Pillow's default): {png[6]['ms_per_overlay']} ms, {png[6]['kb_per_overlay']} KB;"
          f" level 1 (predict's): {png[1]['ms_per_overlay']} ms, {png[1]['kb_per_overlay']} KB "
          f"({len(images)} overlays)")
    print(json.dumps({"bench": "seg_predict", "rows": rows, "identical": identical, "png": png,
                      "loadavg": os.getloadavg()}))
    if not identical:
        sys.exit("the --writers settings wrote different folders")


if __name__ == "__main__":
    main()
