"""WM-811K adapter: listing + rendering throughput and peak memory on a synthetic LSWMD.pkl.

    python bench/wm811k.py [--n 20000] [--labelled 0.213] [--pickle PATH] [--json-out FILE]

Writes a synthetic pickle of N maps the way the real one is written (Python 2 + pandas 0.18,
protocol 2; map shapes from the dataset's common products, 21.3% labelled), in a child process.
A second, fresh child process then measures the adapter alone, as ingest drives it:
  pass 1  `count_hint()`: unpickle the skeleton, build the per-row index (maps stay on disk);
  pass 2  `samples()` with include_unlabeled: seek + read every map, render it (palette lookup and
          nearest upscale to 512) and build its RawSample (mask array for defective maps).
It reports maps/s for each pass and overall, the peak RSS of that process (resource.getrusage),
the RSS growth over the process after imports, and both against the pickle's size on disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = [((32, 29), 0.25), ((25, 27), 0.2), ((49, 39), 0.15), ((26, 26), 0.15), ((52, 59), 0.1),
          ((38, 36), 0.1), ((64, 71), 0.05)]
DEFECTS = ["Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(path: Path, n: int, labelled: float) -> None:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the fixture writer is test code
    from legacy_pickle_writer import write_legacy_frame

    rng = np.random.default_rng(0)
    shapes = [s for s, _ in SHAPES]
    probs = np.array([p for _, p in SHAPES])
    disks = {}
    for h, w in shapes:
        yy, xx = np.mgrid[0:h, 0:w]
        disks[(h, w)] = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
    empty = np.empty((0, 0), dtype=object)

    def nested(value):
        cell = np.empty((1, 1), dtype=object)
        cell[0, 0] = value
        return cell

    maps, failure, split, lots, index, die = [], [], [], [], [], []
    for i in range(n):
        h, w = shapes[rng.choice(len(shapes), p=probs)]
        inside = disks[(h, w)]
        m = inside.astype(np.uint8)
        m[inside & (rng.random((h, w)) < 0.08)] = 2
        maps.append(m)
        if rng.random() < labelled:
            failure.append(nested("none" if rng.random() < 0.85 else DEFECTS[rng.integers(len(DEFECTS))]))
            split.append(nested("Training" if rng.random() < 0.31 else "Test"))
        else:
            failure.append(empty)
            split.append(empty)
        lots.append(f"lot{i // 25 + 1}")
        index.append(float(i % 25 + 1))
        die.append(float(h * w))
    write_legacy_frame(path, {"waferMap": maps, "dieSize": die, "lotName": lots, "waferIndex": index,
                              "trianTestLabel": split, "failureType": failure})


def measure(path: Path) -> dict:
    from imdd_build.sources.wm811k import WM811KAdapter

    base_rss = peak_rss_mb()
    t0 = time.perf_counter()
    adapter = WM811KAdapter(path, include_unlabeled=True)
    total = adapter.count_hint()
    t1 = time.perf_counter()
    pass1_rss = peak_rss_mb()
    n = masks = quarantined = 0
    for sample in adapter.samples():
        if not hasattr(sample, "pixels"):
            quarantined += 1
            continue
        n += 1
        masks += sample.mask is not None
    t2 = time.perf_counter()
    size_mb = path.stat().st_size / 2**20
    peak = peak_rss_mb()
    return {"maps": total, "samples": n, "with_mask": masks, "quarantined": quarantined,
            "pickle_mb": round(size_mb, 1),
            "pass1_s": round(t1 - t0, 2), "pass1_maps_per_s": round(total / (t1 - t0)),
            "pass2_s": round(t2 - t1, 2), "pass2_maps_per_s": round(n / (t2 - t1)),
            "total_maps_per_s": round(n / (t2 - t0)),
            "rss_after_imports_mb": round(base_rss, 1), "rss_after_pass1_mb": round(pass1_rss, 1),
            "peak_rss_mb": round(peak, 1), "rss_growth_mb": round(peak - base_rss, 1),
            "growth_vs_pickle": round((peak - base_rss) / size_mb, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="maps in the synthetic pickle")
    ap.add_argument("--labelled", type=float, default=0.213, help="fraction of labelled maps")
    ap.add_argument("--pickle", type=Path, help="use (or create) this pickle instead of a temporary one")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--_generate", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--_measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._generate:
        generate(args._generate, args.n, args.labelled)
        return
    if args._measure:
        print(json.dumps(measure(args._measure)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-wm811k-") as tmp:
        path = args.pickle or Path(tmp) / "LSWMD.pkl"
        if not path.exists():
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--_generate", str(path), "--n", str(args.n),
                            "--labelled", str(args.labelled)], check=True)
            print(f"generated {path.name}: {args.n} maps, {path.stat().st_size / 2**20:.1f} MB "
                  f"in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--_measure", str(path)], check=True,
                             capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [("maps in pickle", result["maps"]), ("pickle size (MB)", result["pickle_mb"]),
            ("pass 1 index (s)", result["pass1_s"]), ("pass 1 (maps/s)", result["pass1_maps_per_s"]),
            ("pass 2 read+render (s)", result["pass2_s"]), ("pass 2 (maps/s)", result["pass2_maps_per_s"]),
            ("listing+rendering (maps/s)", result["total_maps_per_s"]),
            ("RSS after imports (MB)", result["rss_after_imports_mb"]),
            ("peak RSS after pass 1 (MB)", result["rss_after_pass1_mb"]),
            ("peak RSS (MB)", result["peak_rss_mb"]), ("RSS growth (MB)", result["rss_growth_mb"]),
            ("growth / pickle size", result["growth_vs_pickle"])]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
