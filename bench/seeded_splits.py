"""Seeded splits per near-duplicate group on a real source: what `shard` keeps, per image vs per group.

    python bench/seeded_splits.py [--root ../shared/realdata/magnetic_tile_full] [--source mtd] [--workers 2] [--json]

A temporary workspace ingests the source (`imdd-build ingest`), drafts template captions, then runs
`imdd-build shard --format parquet` twice, in the same run: `--seeded-splits sample` (the baseline:
the per-image seeded draw, as before group splits; the leakage rule then drops the copies outside a
group's most held-out split) and `--seeded-splits group` (the default). For each it prints the
records in the shards, the records dropped for leakage, train/validation/test with their fractions,
the leakage groups (groups spanning an evaluation split before the leakage rule), the groups whose
members span splits in the shards (read back from the Parquet files: every near-duplicate group of
`imdd-build dedupe`, checked against the split each key was written with), the records moved to
their group's split, and the training records per source label. Then it shards the group splits a
second time from a second, freshly ingested workspace and checks the shard bytes are the same
(`same_bytes_fresh_catalog`). Targets (issue 25, Magnetic Tile, 1,344 images): 0 dropped, >= 1,300
in the shards, each split within 5 points of 70/10/20, no group spanning splits.
`--json` prints `{"rows": [...], "same_bytes_fresh_catalog": bool}` as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPLITS = ("train", "validation", "test")
TARGET = {"train": 0.7, "validation": 0.1, "test": 0.2}


def cli(workspace: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "imdd_build", "--workspace", str(workspace), *args, "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"imdd-build {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(workspace: Path, source: str, root: Path, workers: int) -> float:
    start = time.perf_counter()
    cli(workspace, "ingest", source, "--root", str(root), "--workers", str(workers))
    cli(workspace, "caption")
    return time.perf_counter() - start


def shard_rows(out: Path) -> dict[str, tuple[str, str, str]]:
    """key -> (split, split_origin, first source label) of every Parquet row under `out`."""
    import pyarrow.parquet as pq

    rows = {}
    for path in sorted(out.glob("data/**/*.parquet")):
        t = pq.read_table(path, columns=["key", "split", "split_origin", "source_labels"]).to_pydict()
        for key, split, origin, labels in zip(t["key"], t["split"], t["split_origin"], t["source_labels"]):
            rows[key] = (split, origin, labels[0] if labels else "")
    return rows


def measure(workspace: Path, out: Path, mode: str, workers: int) -> dict:
    start = time.perf_counter()
    summary = cli(workspace, "shard", "--out", str(out), "--format", "parquet", "--workers", str(workers),
                  "--seeded-splits", mode)
    seconds = time.perf_counter() - start
    rows = shard_rows(out)
    groups = cli(workspace, "dedupe", "--seeded-splits", mode)["groups"]  # the same groups, nothing changes
    spanning = sum(len({rows[m["key"]][0] for m in g["members"] if m["key"] in rows}) > 1 for g in groups)
    splits = Counter(split for split, _, _ in rows.values())
    total = sum(splits.values())
    return {"mode": mode, "images": summary["dedupe"]["images"], "in_shards": total,
            "dropped": len(summary["dropped_for_leakage"]), "groups": len(groups),
            "leakage_groups": summary["dedupe"]["leakage_groups"], "groups_spanning_splits": spanning,
            "moved": summary["dedupe"]["split_moves"], "seconds": round(seconds, 1),
            "splits": {s: splits[s] for s in SPLITS},
            "fractions": {s: round(splits[s] / total, 4) if total else 0.0 for s in SPLITS},
            "train_per_label": dict(sorted(Counter(label for split, _, label in rows.values()
                                                   if split == "train").items())),
            "manifest": [(s["path"], s["sha256"]) for s in json.loads((out / "manifest.json").read_text())["shards"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "realdata" / "magnetic_tile_full")
    parser.add_argument("--source", default="mtd")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"{args.root}: not found (the complete Magnetic Tile download; see ../shared/realdata)")
    with tempfile.TemporaryDirectory(prefix="imdd-seeded-") as tmp:
        tmp = Path(tmp)
        build_s = build(tmp / "ws", args.source, args.root, args.workers)
        rows = [measure(tmp / "ws", tmp / f"shards-{mode}", mode, args.workers) for mode in ("sample", "group")]
        build(tmp / "ws2", args.source, args.root, 1)
        fresh = measure(tmp / "ws2", tmp / "shards-fresh", "group", 1)
        same = fresh["manifest"] == rows[1]["manifest"]
    print(f"{args.source} from {args.root} (ingest + caption {build_s:.0f} s)")
    print(f"{'mode':8} {'images':>6} {'in shards':>9} {'dropped':>7} {'moved':>5} {'groups':>6} {'leakage':>7} "
          f"{'spanning':>8}  train / validation / test (fractions)")
    for r in rows:
        f, n = r["fractions"], r["splits"]
        print(f"{r['mode']:8} {r['images']:>6} {r['in_shards']:>9} {r['dropped']:>7} {r['moved']:>5} {r['groups']:>6} "
              f"{r['leakage_groups']:>7} {r['groups_spanning_splits']:>8}  {n['train']} / {n['validation']} / "
              f"{n['test']} ({100 * f['train']:.1f} / {100 * f['validation']:.1f} / {100 * f['test']:.1f} %)")
    print("train records per source label:")
    for label in sorted(set(rows[0]["train_per_label"]) | set(rows[1]["train_per_label"])):
        print(f"  {label:14} sample {rows[0]['train_per_label'].get(label, 0):>4}   "
              f"group {rows[1]['train_per_label'].get(label, 0):>4}")
    base, new = rows
    print(f"kept in shards: {new['in_shards'] / max(1, base['in_shards']):.2f}x the per-image baseline; "
          f"same shard bytes from a freshly ingested catalog: {same}")
    worst = max(abs(new["fractions"][s] - TARGET[s]) for s in SPLITS)
    ok = new["dropped"] == 0 and new["in_shards"] >= 1300 * new["images"] / 1344 and worst <= 0.05 \
        and new["groups_spanning_splits"] == 0
    print(f"targets (0 dropped, >= 1300/1344 kept, splits within 5 points, no group spanning): "
          f"{'met' if ok else 'NOT met'} (largest split deviation {100 * worst:.1f} points)")
    if args.json:
        for r in rows:
            r.pop("manifest")
        print(json.dumps({"rows": rows, "same_bytes_fresh_catalog": same}))


if __name__ == "__main__":
    main()
