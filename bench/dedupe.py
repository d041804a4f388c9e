"""Near-duplicate search at scale, and the memory of `push-to-hub --dry-run` on a large catalog.

    python bench/dedupe.py [--n 100000,200000,400000] [--radius 6] [--workers 1] [--json]
    python bench/dedupe.py --publish-memory 20000,200000 [--workers 2] [--json]

Search. For each n, a fresh child process draws n random 64-bit hashes (seeded) and plants n/100
near-duplicate pairs (the copy differs from its original in 1..radius random bits), with a random
pixel digest per image, then times `dedupe.duplicate_groups` (what `imdd-build dedupe` runs once the
hashes are read: equal digests, equal hashes, multi-index hashing within the radius, connected
groups), best of `--repeat`. `seconds` is CPU time by default (`--clock wall` for wall-clock; both
are in the table): on a machine shared with other jobs the wall clock measures the neighbours.
Afterwards (not timed) it checks every planted pair against the search's pair list: `pairs_found`
counts the planted pairs found (the target is all of them); the table also shows every pair found
(planted + chance ones), and a baseline from the same process: the sorts alone (as many `np.sort` of
n uint64 as the plan has tables), the floor of any sort-based index, whose growth per doubling shows
what the memory hierarchy allows. Peak RSS is the child's `ru_maxrss`. Printed: a table, the growth
ratio per doubling of n (time ratio normalised to a factor 2 of n), and with `--json` as the last
line `{"rows": [{"n", "seconds", "pairs_planted", "pairs_found", "peak_rss_mb"}, ...]}`. Targets:
growth per doubling <= 2.3x; every planted pair found; peak RSS < 1 GB at 400k.

Publish memory (`--publish-memory N[,N...]`). For each N a catalog of N tiny distinct generated
images (8x8 random colour grids on a 64-pixel canvas; a third defective with a mask) is built
through the normal ingest and template captions (as `bench/ingest.py --memory` does), then
`imdd-build push-to-hub --dry-run` runs in a child process while a sampler reads the RSS of its
process tree every 0.1 s: the sum of RSS (pages shared by the forked workers counted in each) and
of PSS (shared pages split between the processes that map them: the memory the run really holds).
Flat means the peak does not grow with N; the target is < 1.5 GB at 200k.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from math import comb
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proctree import watch  # noqa: E402  (bench/proctree.py: memory of a process tree from /proc)

ROW_KEYS = ("n", "seconds", "pairs_planted", "pairs_found", "peak_rss_mb")


# -- search ---------------------------------------------------------------------------------------
def synthetic(n: int, radius: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, digests, planted pairs (p, 2) with i < j): n/100 pairs within `radius` bits."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    digests = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    planted = rng.choice(n, (max(1, n // 100), 2), replace=False)
    for a, b in planted:
        flips = rng.choice(64, int(rng.integers(1, radius + 1)), replace=False)
        hashes[b] = hashes[a] ^ np.uint64(sum(1 << int(f) for f in flips))
    return hashes, digests, np.sort(planted, axis=1)


def search_child(n: int, radius: int, workers: int, repeat: int, clock: str) -> dict:
    """Runs in its own process (so peak RSS is this n's): time the grouping, check the pairs."""
    from imdd_build.dedupe import duplicate_groups
    from imdd_build.nearsearch import near_pairs, plan

    hashes, digests, planted = synthetic(n, radius)
    duplicate_groups(hashes[:100], digests[:100], radius, workers)  # imports (scipy) before the clock
    wall = cpu = float("inf")
    for _ in range(repeat):  # best of `repeat`: the machine is shared, the minimum is the least disturbed
        start, start_cpu = time.perf_counter(), time.process_time()
        groups = duplicate_groups(hashes, digests, radius, workers)
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    # Baseline in the same process: the sorts alone (one per table of the plan, n uint64 each), the
    # floor of any sort-based index; its growth per doubling is what the memory hierarchy allows.
    k = plan(n, radius)
    tables = comb(radius + k, k) if k else 0
    floor = float("inf")
    for _ in range(repeat):
        data = np.random.default_rng(1).integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(tables):
            np.sort(data)
        floor = min(floor, (time.process_time() - start_cpu) if clock == "cpu" else time.perf_counter() - start)
    pairs = near_pairs(hashes, radius, workers)
    found = {(int(a), int(b)) for a, b in pairs}
    hit = sum((int(a), int(b)) in found for a, b in planted)
    return {"n": n, "seconds": round(cpu if clock == "cpu" else wall, 3), "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "pairs_planted": len(planted), "pairs_found": hit,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "pairs_total": len(found), "groups": len(groups), "tables": tables, "sort_floor_s": round(floor, 3)}


def search(args) -> list[dict]:
    rows = []
    for n in args.n:
        out = subprocess.run([sys.executable, __file__, "--search-child", str(n), "--radius", str(args.radius),
                              "--workers", str(args.workers), "--repeat", str(args.repeat), "--clock", args.clock],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  n={n}: {rows[-1]['seconds']:.2f}s", file=sys.stderr)
    print(f"radius {args.radius}, {args.workers} worker(s), best of {args.repeat}, seconds = {args.clock} time, "
          f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'n':>9} {'seconds':>8} {'growth/doubling':>16} {'wall s':>7} {'cpu s':>7} {'sort floor s':>13} "
          f"{'floor growth':>13} {'planted':>8} {'found':>7} {'all pairs':>10} {'peak RSS MB':>12}")

    def growth(rows: list[dict], i: int, field: str) -> str:
        if not i:
            return ""
        a, b = rows[i - 1], rows[i]
        return f"{(b[field] / a[field]) ** (1 / math.log2(b['n'] / a['n'])):.2f}x" if a[field] else ""
    for i, r in enumerate(rows):
        print(f"{r['n']:>9} {r['seconds']:>8.2f} {growth(rows, i, 'seconds'):>16} {r['wall_s']:>7.2f} "
              f"{r['cpu_s']:>7.2f} "
              f"{r['sort_floor_s']:>13.2f} {growth(rows, i, 'sort_floor_s'):>13} {r['pairs_planted']:>8} "
              f"{r['pairs_found']:>7} {r['pairs_total']:>10} {r['peak_rss_mb']:>12.0f}")
    return rows


# -- push-to-hub memory ---------------------------------------------------------------------------
def build_child(n: int, workers: int, ws_dir: Path) -> None:
    """Runs in its own process: ingest n distinct tiny images, caption them, print a JSON line."""
    from imdd_build.caption import caption_workspace
    from imdd_build.ingest import ingest
    from imdd_build.normalize import NormalizeOptions
    from imdd_build.source_entry import source_entry
    from imdd_build.workspace import Workspace
    from synthetic_source import register_synthetic

    adapter_id = register_synthetic(n, distinct=True)
    entry = source_entry("folder", license="CC0-1.0", domain="metal_surface", source_id="synthetic")
    ws_dir.mkdir(parents=True, exist_ok=True)  # also the (unused) source root the adapter checks
    start = time.perf_counter()
    ws = Workspace(ws_dir)
    result = ingest(ws, adapter_id, ws_dir, entry, NormalizeOptions(size=64), workers=workers, commit_every=1000)
    with ws.catalog() as catalog:
        caption_workspace(catalog)
    print(json.dumps({"seconds": time.perf_counter() - start, "written": result.written}))


def _sampled(cmd: list[str]) -> tuple[str, dict]:
    """Run `cmd`, sampling the RSS and PSS of its process tree; (stdout, peaks in MB and the time)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    out, peak, _ = watch(proc, pss=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed with exit code {proc.returncode}")
    return out, {"seconds": round(time.perf_counter() - start, 1), "peak_rss_tree_mb": round(peak["tree_kb"] / 1024),
                 "peak_pss_tree_mb": round(peak["pss_kb"] / 1024),
                 "peak_rss_driver_mb": round(peak["driver_kb"] / 1024)}


def publish_memory(args) -> list[dict]:
    rows = []
    for n in args.publish_memory:
        tmp = Path(tempfile.mkdtemp(prefix="imdd-pubbench-"))
        try:
            out, build = _sampled([sys.executable, __file__, "--build-child", str(n), "--workers", str(args.workers),
                                   "--ws", str(tmp / "ws")])
            out, push = _sampled([sys.executable, "-m", "imdd_build", "--workspace", str(tmp / "ws"), "push-to-hub",
                                  "bench/imdd", "--dry-run", str(tmp / "repo"), "--private", "--workers",
                                  str(args.workers), "--json"])
            summary = json.loads(out.strip().splitlines()[-1])
            rows.append({"records": n, "build_seconds": build["seconds"], "build_peak_rss_tree_mb":
                         build["peak_rss_tree_mb"], "push_seconds": push["seconds"],
                         "push_peak_rss_tree_mb": push["peak_rss_tree_mb"],
                         "push_peak_pss_tree_mb": push["peak_pss_tree_mb"],
                         "push_peak_rss_driver_mb": push["peak_rss_driver_mb"], "published": summary["records"],
                         "dedupe_groups": summary["dedupe"]["group_count"],
                         "catalog_mb": round((tmp / "ws" / "catalog.sqlite").stat().st_size / 1e6)})
            print(f"  {n}: {rows[-1]}", file=sys.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"push-to-hub --dry-run, {args.workers} worker(s), cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'records':>9} {'push s':>8} {'peak RSS tree MB':>17} {'peak PSS tree MB':>17} {'driver MB':>10} "
          f"{'catalog MB':>11} {'published':>10} {'groups':>7}")
    for r in rows:
        print(f"{r['records']:>9} {r['push_seconds']:>8.1f} {r['push_peak_rss_tree_mb']:>17} "
              f"{r['push_peak_pss_tree_mb']:>17} "
              f"{r['push_peak_rss_driver_mb']:>10} {r['catalog_mb']:>11} {r['published']:>10} {r['dedupe_groups']:>7}")
    return rows


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=_ints, default=[100_000, 200_000, 400_000], help="Comma-separated sizes.")
    parser.add_argument("--radius", type=int, default=6)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="Best of R timings per n.")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="What `seconds` is: process CPU time (default; steady on a shared machine, and with "
                             "--workers 1 the search is one thread) or wall-clock.")
    parser.add_argument("--publish-memory", type=_ints, default=[], help="Catalog sizes for push-to-hub --dry-run.")
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--search-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--build-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ws", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search_child:
        print(json.dumps(search_child(args.search_child, args.radius, args.workers, args.repeat, args.clock)))
        return
    if args.build_child:
        build_child(args.build_child, args.workers, args.ws)
        return
    if args.publish_memory:
        rows = publish_memory(args)
        result = {"publish_memory": rows}
    else:
        rows = search(args)
        result = {"rows": [{k: r[k] for k in ROW_KEYS} for r in rows]}
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({**result, "details": rows}, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
