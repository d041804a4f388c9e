"""Rows each loader slot parses against the rows it keeps, over one epoch of the training stream.

    python bench/loader.py --shards 1211 --ranks 8 --workers 8 [--rows 100] [--old auto|yes|no] [--json]

Writes `--shards` latent shards of `--rows` rows each with precompute's own shard writer (tiny latents: the
point is the row counts), then for every simulated (rank, worker) slot reads one epoch through the real
stream (`ShardStream.epoch_rows`, with the slot a DataLoader worker of that rank plays) and counts the raw
rows it parsed and the rows it kept. Checks that every row is kept exactly once per epoch.

The old rule (shards split whole only when the shard count divides evenly by ranks x workers, otherwise
every slot parses every row and keeps 1 in N) is measured in the same run through the same stream with only
its shard assignment swapped; `--old auto` measures it fully when that is under 2M parsed rows, otherwise on
slot 0 alone (every slot of the old rule parses the same rows) and scales by the slot count.

Prints a table on stderr and, with --json, one JSON object as the last stdout line:
    {"parsed_per_kept": x, "slots": [{"rank", "worker", "rows_parsed", "rows_kept"}, ...], "every_row_once": b,
     "shards", "ranks", "workers", "rows_per_shard", "seconds", "old": {"parsed_per_kept", ...} | null}
Target: parsed_per_kept <= 1.05 whenever shards >= ranks x workers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imdd_models.data import resolve  # noqa: E402
from imdd_models.data.sources import LATENT_MANIFEST  # noqa: E402
from imdd_models.data.stream import ShardStream, StreamConfig  # noqa: E402
from imdd_models.diffusion.precompute import FORMAT_VERSION, _write_shard  # noqa: E402

TARGET = 1.05


def write_latent_shards(out: Path, shards: int, rows: int) -> Path:
    """`shards` latent shards of `rows` rows (precompute's writer and schema), plus latents.json."""
    (out / "latents").mkdir(parents=True, exist_ok=True)
    latent = np.zeros((4, 2, 2), np.float16).tobytes()
    embed = np.zeros(8, np.float16).tobytes()
    for s in range(shards):
        batch = [{"key": f"s{s:05d}/{r:04d}", "caption": "", "latent": latent, "latent_flip": None,
                  "latent_shape": [4, 2, 2], "image_embed": embed, "input_ids": [0] * 77,
                  "split": "train" if r % 4 else "test", "source": "bench", "label": "normal"}
                 for r in range(rows)]
        _write_shard(out / "latents" / f"all-{s:05d}.parquet", batch)
    (out / LATENT_MANIFEST).write_text(json.dumps({"format_version": FORMAT_VERSION, "samples": shards * rows,
                                                   "options": {"split": None}, "complete": True}))
    return out


class OldRuleStream(ShardStream):
    """The stream with the assignment it had before: whole shards only when they divide evenly by the slots."""

    def parts(self, shards, slot, slots):
        if len(shards) >= slots and len(shards) % slots == 0:
            return [(shard, 1, 0) for shard in shards[slot::slots]]
        return [(shard, slots, slot) for shard in shards]  # every slot parses every row, keeps 1 in N


def measure(source, ranks: int, workers: int, cls=ShardStream, only_first: bool = False) -> dict:
    slots, kept = [], Counter()
    started = time.perf_counter()
    for rank in range(ranks):
        for worker in range(workers):
            stream = cls(source, StreamConfig(seed=0, shuffle_buffer=100, rank=rank, world_size=ranks),
                         transform=None)
            _, slot, n_slots = stream.slot(worker, workers)
            keys = [row["key"] for row in stream.epoch_rows(0, slot, n_slots)]
            kept.update(keys)
            slots.append({"rank": rank, "worker": worker, "rows_parsed": stream.rows_parsed,
                          "rows_kept": len(keys)})
            if only_first:
                break
        if only_first:
            break
    parsed = sum(s["rows_parsed"] for s in slots)
    n_kept = sum(s["rows_kept"] for s in slots)
    return {"parsed_per_kept": round(parsed / max(1, n_kept), 4), "rows_parsed": parsed, "rows_kept": n_kept,
            "max_parsed_per_slot": max(s["rows_parsed"] for s in slots),
            "kept_per_slot": [min(s["rows_kept"] for s in slots), max(s["rows_kept"] for s in slots)],
            "seconds": round(time.perf_counter() - started, 2), "slots": slots, "kept": kept,
            "measured_slots": len(slots)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rows", type=int, default=100, help="rows per shard")
    ap.add_argument("--old", choices=("auto", "yes", "no"), default="auto",
                    help="also measure the old assignment (auto: fully when cheap, else slot 0 scaled)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n_slots = args.ranks * args.workers
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = resolve(write_latent_shards(Path(tmp) / "latents", args.shards, args.rows))
        written = time.perf_counter() - started
        new = measure(source, args.ranks, args.workers)
        total = args.shards * args.rows
        once = len(new["kept"]) == total and set(new["kept"].values()) == {1}
        old = None
        if args.old != "no":
            old_parsed = args.shards * args.rows * n_slots  # what the old rule parses when it splits by row
            only_first = args.old == "auto" and old_parsed > 2_000_000
            old = measure(source, args.ranks, args.workers, OldRuleStream, only_first=only_first)
            if only_first:  # every slot of the old row split parses every row: slot 0 stands for all
                first = old["slots"][0]
                old.update(rows_parsed=first["rows_parsed"] * n_slots, rows_kept=total,
                           parsed_per_kept=round(first["rows_parsed"] * n_slots / total, 4),
                           seconds_all_slots_estimated=round(old["seconds"] * n_slots, 1))
    rows = [("new (shard-level)", new)] + ([("old (divisible only)", old)] if old else [])
    print(f"{args.shards} shards x {args.rows} rows, {args.ranks} ranks x {args.workers} workers = {n_slots} slots "
          f"(written in {written:.1f} s); every row kept once per epoch: {once}", file=sys.stderr)
    print(f"{'rule':22} {'parsed':>10} {'kept':>8} {'parsed/kept':>12} {'max parsed/slot':>16} "
          f"{'kept/slot':>11} {'slots measured':>15} {'s':>7}", file=sys.stderr)
    for name, r in rows:
        print(f"{name:22} {r['rows_parsed']:>10} {r['rows_kept']:>8} {r['parsed_per_kept']:>12} "
              f"{r['max_parsed_per_slot']:>16} {'%d-%d' % tuple(r['kept_per_slot']):>11} "
              f"{r['measured_slots']:>15} {r['seconds']:>7}", file=sys.stderr)
    verdict = "meets" if new["parsed_per_kept"] <= TARGET else "misses"
    if args.shards >= n_slots:
        print(f"target parsed/kept <= {TARGET}: {verdict} ({new['parsed_per_kept']})", file=sys.stderr)
    if args.json:
        summary = {"parsed_per_kept": new["parsed_per_kept"], "slots": new["slots"], "every_row_once": once,
                   "shards": args.shards, "ranks": args.ranks, "workers": args.workers, "rows_per_shard": args.rows,
                   "seconds": new["seconds"],
                   "old": ({k: v for k, v in old.items() if k not in ("slots", "kept")} if old else None)}
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
