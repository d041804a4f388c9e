"""Stage-2 training data path: loader workers, memory against the pool, and learning on a real set.

    python bench/seg_train.py [--steps 40] [--repeats 2] [--pool 24] [--real DIR | --real-root DIR]
                              [--real-steps 200] [--real-shots 60] [--skip-real] [--keep DIR]

1. Throughput: samples/s of tiny `train-seg` (generated data, 3 classes, augmentation on) with
   `--num-workers 0` and `--num-workers 2`, alternated `--repeats` times in the same run (best of each);
   ratio = 2 workers / 0 workers (target >= 1.5x on a 2-core machine).
2. Memory: peak RSS of `train-seg --shots 20 --max-steps 3 --num-workers 0` on a generated pool of N records and
   of ~8N (the extra records are renamed copies of the defective ones, so the shots come from a pool 8x as big;
   Parquet row groups of 64 rows, as `imdd-build shard` bounds them); ratio = RSS(8N) / RSS(N) (target <= 1.2x).
   For scale, the RSS of holding the pool's raw rows in memory (what selection did before) is measured too.
3. Learning: a real set's shard folder (`--real`, or built from a native Magnetic Tile folder `--real-root` with
   `imdd-build ingest mtd`, `caption`, `shard`): tiny `train-seg` on its train split (`--real-shots` per class,
   `--real-steps` steps) and the same run at 0 steps, `predict` on the test split, `evaluate`: pixel AUROC,
   AUPRO and accuracy of both. The stage-1 folder is the tests' tiny one (random weights; no stage-1 training).

Every run is a separate process (`python -m imdd_models ...`); peak RSS is that process's VmHWM at exit
(with `--num-workers 0` it is the whole run). Prints a Markdown table and a JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PY = sys.executable
MT_CLASSES = "blowhole,break,crack,fray,uneven"


def run(args: list[str], env: dict | None = None) -> tuple[dict, float]:
    """Run a process; (its last-line JSON, 0.0). Fails loudly with its stderr."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}\n{err[-3000:]}")
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), 0.0


HWM = ("import atexit, sys\n"
       "def hwm():\n"
       "    kib = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
       "    print('VMHWM_KIB', kib, file=sys.stderr, flush=True)\n"
       "atexit.register(hwm)\n")


def run_rss(args: list[str]) -> tuple[dict, float]:
    """Like `run`, returning this one process's peak RSS (MiB): its /proc VmHWM read at exit. (Not
    `wait4`'s ru_maxrss: Linux carries the forking parent's RSS into the child's maxrss across exec.)"""
    if args[1:3] == ["-m", "imdd_models"]:
        code = HWM + "from imdd_models.cli import app\nsys.argv = ['imdd-models'] + sys.argv[1:]\napp()\n"
        args = [args[0], "-c", code, *args[3:]]
    else:  # [PY, "-c", CODE, ...]
        args = [args[0], "-c", HWM + args[2], *args[3:]]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args[:3])}\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    kib = next(ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("VMHWM_KIB"))
    return (json.loads(lines[-1]) if lines else {}), int(kib) / 1024.0


def train_args(diffusion: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [PY, "-m", "imdd_models", "train-seg", "--diffusion", str(diffusion), "--data", str(data),
            "--config", "tiny", "--out", str(out), "--json", *extra]


def grown_pool(folder: Path, out: Path, times: int, row_group: int = 64) -> tuple[Path, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(next((folder / "data").glob("*.parquet")))
    rows = table.to_pylist()
    grown = list(rows)
    for t in range(1, times):
        grown += [{**r, "key": f"{r['key']}-copy{t}"} for r in rows if r["defect_types"]]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(grown, schema=table.schema), out / "data" / "train-00000-of-00001.parquet",
                   row_group_size=row_group)
    return out, len(grown)


HOLD_POOL = ("import json,sys; from imdd_models.data import iter_raw; rows=list(iter_raw(sys.argv[1])); "
             "print(json.dumps({'rows': len(rows), 'bytes': sum(len(r['image_bytes'] or b'') for r in rows)}))")


def build_real(root: Path, tmp: Path) -> Path:
    ws, shards = tmp / "mt-ws", tmp / "mt-shards"
    base = [PY, "-m", "imdd_build", "--workspace", str(ws)]
    run(base + ["ingest", "mtd", "--root", str(root), "--workers", "1", "--json"])
    run(base + ["caption", "--json"])
    run(base + ["shard", "--out", str(shards), "--format", "parquet", "--workers", "1", "--json"])
    return shards


def learn(diffusion: Path, data: Path, tmp: Path, steps: int, shots: int, workers: int) -> dict:
    results = {}
    one = {"OMP_NUM_THREADS": "1"}  # a shared 2-core machine: 2 OpenMP threads per process thrash
    for n in (0, steps):
        out = tmp / f"real-{n}"
        t = time.perf_counter()
        summary, _ = run(train_args(diffusion, data, out, "--classes", MT_CLASSES, "--shots", str(shots),
                                    "--max-steps", str(n), "--num-workers", str(workers),
                                    "--schedule-steps", str(max(steps, 1))), env=one)
        preds = tmp / f"pred-{n}"
        run([PY, "-m", "imdd_models", "predict", "--model", str(out), "--classes", MT_CLASSES, "--data", str(data),
             "--split", "test", "--out", str(preds), "--json"], env=one)
        ev, _ = run([PY, "-m", "imdd_models", "evaluate", "--predictions", str(preds), "--data", str(data),
                     "--split", "test", "--json"], env=one)
        results[n] = {"pixel_auroc": ev.get("pixel_auroc"), "aupro": ev.get("aupro"), "accuracy": ev.get("accuracy"),
                      "image_auroc": ev.get("image_auroc"), "records": ev.get("records"),
                      "train_samples": summary.get("samples"), "per_class": summary.get("per_class"),
                      "loss_start": summary.get("loss_start"), "loss_end": summary.get("loss_end"),
                      "seconds": round(time.perf_counter() - t, 1)}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="steps per throughput run (batch 4)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pool", type=int, default=24, help="records per class of the N pool (N = 3.5 x this + 3)")
    ap.add_argument("--real", type=Path, help="a shard folder with train and test splits (Magnetic Tile classes)")
    ap.add_argument("--real-root", type=Path, help="a native Magnetic Tile folder to build shards from")
    ap.add_argument("--real-steps", type=int, default=200)
    ap.add_argument("--real-shots", type=int, default=60)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--baseline-threads", default="1,2", help="torch threads of the 0-worker runs (best is the baseline)")
    ap.add_argument("--parts", default="throughput,memory,real", help="which of throughput,memory,real to run")
    ap.add_argument("--keep", type=Path, help="keep the work folder here")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="seg-train-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    report: dict = {"bench": "seg_train", "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}
    try:
        from imdd_models.components import write_components
        from seg_fixtures import write_diffusion_folder, write_seg_shards
        if not (tmp / "stage1").is_dir():
            write_components("tiny", tmp / "components")
            write_diffusion_folder(tmp / "components", tmp / "stage1")
        diffusion = tmp / "stage1"

        parts = set(args.parts.split(","))
        # 1. throughput: 0 workers with 1 and with 2 torch threads (the better one is the baseline), 2 workers
        # with 1 torch thread in the main process (the second core is the workers')
        if "throughput" in parts:
            small = write_seg_shards(tmp / "small", per_class=6) if not (tmp / "small").is_dir() else tmp / "small"
            rates: dict[str, list[float]] = {f"0w-{n}t": [] for n in args.baseline_threads.split(",")}
            rates["2w-1t"] = []
            for r in range(args.repeats):
                for name in rates:
                    w, threads = int(name[0]), name[3]
                    out = tmp / f"tp-{name}-{r}"
                    shutil.rmtree(out, ignore_errors=True)
                    s, _ = run(train_args(diffusion, small, out, "--classes", "scratch,hole,stain", "--max-steps",
                                          str(args.steps), "--num-workers", str(w), "--augment", "on"),
                               env={"OMP_NUM_THREADS": threads})
                    rates[name].append(s["samples_per_s"])
            base_rate = max(max(v) for k, v in rates.items() if k.startswith("0w"))
            report["throughput"] = {"samples_per_s": rates, "baseline": base_rate,
                                    "ratio": round(max(rates["2w-1t"]) / base_rate, 3),
                                    "steps": args.steps, "batch": 4}

        # 2. memory against the pool
        pools = {}
        if "memory" in parts and not (tmp / "pool-base").is_dir():
            write_seg_shards(tmp / "pool-base", per_class=args.pool)
        base = tmp / "pool-base"
        for times in ((1, 8) if "memory" in parts else ()):
            folder, n = grown_pool(base, tmp / f"pool-{times}x", times)
            out = tmp / f"rss-{times}x"
            shutil.rmtree(out, ignore_errors=True)
            s, rss = run_rss(train_args(diffusion, folder, out, "--classes", "scratch,hole,stain", "--shots", "20",
                                        "--max-steps", "3", "--num-workers", "0"))
            held, held_rss = run_rss([PY, "-c", HOLD_POOL, str(folder)])
            pools[times] = {"records": n, "rss_mib": round(rss, 1), "samples": s["samples"],
                            "hold_pool_rss_mib": round(held_rss, 1), "pool_image_mib": round(held["bytes"] / 2**20, 1)}
        report["memory"] = None if not pools else {"N": pools[1], "8N": pools[8],
                            "ratio": round(pools[8]["rss_mib"] / pools[1]["rss_mib"], 3),
                            "hold_pool_ratio": round(pools[8]["hold_pool_rss_mib"] / pools[1]["hold_pool_rss_mib"], 3)}

        # 3. learning on a real set
        if not args.skip_real and "real" in parts:
            data = args.real
            if data is None:
                root = args.real_root or ROOT.parent / "shared" / "realdata" / "magnetic_tile_full"
                if not root.is_dir():
                    root = ROOT.parent / "shared" / "realdata" / "magnetic_tile"
                data = build_real(root, tmp) if root.is_dir() else None
            if data is not None:
                report["real"] = {"data": str(data), "steps": args.real_steps, "shots": args.real_shots,
                                  **{f"steps_{k}": v for k, v in
                                     learn(diffusion, data, tmp, args.real_steps, args.real_shots, 2).items()}}
        report["load_avg_end"] = os.getloadavg()[0]
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    t, m = report.get("throughput"), report.get("memory")
    print("| measure | baseline | candidate | ratio | target |")
    print("|---|---|---|---|---|")
    if t:
        sp = t["samples_per_s"]
        zero = ", ".join(f"{max(v):.2f} ({k[3:-1]} thread{'s' if k[3:-1] != '1' else ''})"
                         for k, v in sp.items() if k.startswith("0w"))
        print(f"| samples/s, tiny train-seg (best of {args.repeats}) | 0 workers: {zero} "
              f"| 2 workers: {max(sp['2w-1t']):.2f} | {t['ratio']:.2f}x | >= 1.5x |")
    if m:
        print(f"| peak RSS MiB, train-seg --shots 20 | N={m['N']['records']}: {m['N']['rss_mib']:.0f} "
              f"| 8N={m['8N']['records']}: {m['8N']['rss_mib']:.0f} | {m['ratio']:.2f}x | <= 1.2x |")
        print(f"| peak RSS MiB, holding the pool's raw rows (old selection) | {m['N']['hold_pool_rss_mib']:.0f} "
              f"| {m['8N']['hold_pool_rss_mib']:.0f} | {m['hold_pool_ratio']:.2f}x | (context) |")
    if "real" in report:
        r = report["real"]
        a, b = r["steps_0"], r[f"steps_{r['steps']}"]
        for key in ("pixel_auroc", "aupro", "accuracy", "image_auroc"):
            fa = f"{a[key]:.3f}" if a[key] is not None else "-"
            fb = f"{b[key]:.3f}" if b[key] is not None else "-"
            print(f"| {key}, test split ({a['records']} records) | 0 steps: {fa} | {r['steps']} steps: {fb} | | |")
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
