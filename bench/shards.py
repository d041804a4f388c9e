"""Shard writing and reading throughput (images/s): is the loader ever the bottleneck of training?

    python bench/shards.py [--n 600] [--workers 2] [--loaders 1,2] [--shard-size 20MB] [--json-out FILE]

Builds a workspace from the synthetic source of bench/ingest.py (ingest + template captions), then:

  write: `imdd_build.shard.write_shards` (the public API `imdd-build shard` calls), Parquet alone and
         WebDataset alone, images/s;
  read:  every sample with its image and mask decoded to arrays, split over N loader processes the
         way a DataLoader splits shards over its workers (shard i -> worker i % N):
           webdataset: `wds.WebDataset(urls, shardshuffle=False).decode("pil")`,
           parquet:    `datasets.load_dataset("parquet", data_files=..., streaming=True)` (the Image
                       feature decodes to PIL),
         images/s for each N in --loaders.

torch is not needed (the imdd_build environment has none); with torch, a DataLoader over the same
datasets splits shards over workers the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import captioned_workspace  # noqa: E402  (bench/ingest.py)

from imdd_build.shard import ShardOptions, parse_size, write_shards  # noqa: E402


def _read_wds(urls: list[str]) -> int:
    import webdataset as wds

    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"):
        image = sample.get("png", sample.get("jpg"))
        np.asarray(image)
        if "mask.png" in sample:
            np.asarray(sample["mask.png"])
        json.dumps(sample["json"]), sample["txt"]
        n += 1
    return n


def _read_parquet(files: list[str]) -> int:
    from datasets import load_dataset

    n = 0
    for row in load_dataset("parquet", data_files={"train": files}, split="train", streaming=True):
        np.asarray(row["image"])
        if row.get("mask") is not None:
            np.asarray(row["mask"])
        n += 1
    return n


def read_rate(kind: str, paths: list[str], loaders: int) -> tuple[float, int]:
    fn = _read_wds if kind == "webdataset" else _read_parquet
    parts = [paths[w::loaders] for w in range(loaders)]
    parts = [p for p in parts if p]
    start = time.perf_counter()
    if len(parts) == 1:
        total = fn(parts[0])
    else:
        with ProcessPoolExecutor(len(parts)) as pool:
            total = sum(pool.map(fn, parts))
    secs = time.perf_counter() - start
    return total / secs, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Ingest workers (setup).")
    parser.add_argument("--loaders", default="1,2", help="Loader process counts to read with.")
    parser.add_argument("--shard-size", default="20MB")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    loaders = [int(x) for x in args.loaders.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="imdd-shardbench-"))
    result: dict = {"n": args.n, "shard_size": args.shard_size, "cores": os.cpu_count(), "write": {}, "read": {}}
    try:
        ws = captioned_workspace(tmp, args.n, args.workers)
        with ws.catalog() as catalog:
            for fmt in ("parquet", "webdataset"):
                out = tmp / f"out-{fmt}"
                start = time.perf_counter()
                summary = write_shards(catalog, ws.store(), ShardOptions(out=out, formats=(fmt,),
                                                                         max_shard_bytes=parse_size(args.shard_size)))
                secs = time.perf_counter() - start
                result["write"][fmt] = {"images_per_s": round(summary["records"] / secs, 1),
                                        "shards": summary["shards"], "image_ext": summary["image_ext"],
                                        "mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6)}
        urls = {"webdataset": sorted(str(p) for p in (tmp / "out-webdataset/webdataset").glob("*.tar")),
                "parquet": sorted(str(p) for p in (tmp / "out-parquet/data").glob("*.parquet"))}
        for kind, paths in urls.items():
            for n_loaders in loaders:
                rate, total = read_rate(kind, paths, n_loaders)
                assert total == args.n, (kind, total)  # every sample read back
                result["read"][f"{kind} x{n_loaders}"] = {"images_per_s": round(rate, 1), "samples": total}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_1min_after"] = os.getloadavg()[0]
    print(f"{'step':<28} {'images/s':>9}")
    for fmt, row in result["write"].items():
        print(f"{'write ' + fmt:<28} {row['images_per_s']:>9.1f}   ({row['shards']} shards, {row['mb']} MB, "
              f"{row['image_ext']})")
    for name, row in result["read"].items():
        print(f"{'read ' + name + ' loaders':<28} {row['images_per_s']:>9.1f}   ({row['samples']} samples)")
    print(f"n={args.n} cores={os.cpu_count()} load={result['load_avg_1min_after']:.2f}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
