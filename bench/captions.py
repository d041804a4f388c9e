"""Caption throughput: the template captioner (captions/s, with and without the checks) and the LLM
path (requests/s) against the local fake OpenAI server with artificial latency.

    .venv/bin/python bench/captions.py [--records 4096] [--concurrency 256] [--latencies 1.0,0.25]
                                       [--processes 1,0]

The ideal LLM rate is concurrency / latency: a client that is never the bottleneck sustains close
to it. The server runs in its own process (tests/llm_server.py) so that it does not share the
client's interpreter. Each latency is run with each client process count (`--processes`, 0 = the
CLI's default: one per 64 in flight, at most one per core); the single-process run is the baseline.
The busy columns say which side ran out of CPU: a client process near 100% is the bottleneck; the
whole machine near 100% means the cores are.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imdd_build.caption.checks import check_caption
from imdd_build.caption.llm import LLMOptions, caption_llm
from imdd_build.caption.pricing import load_prices
from imdd_build.caption.template import template_caption
from imdd_build.catalog import Catalog
from imdd_build.geometry import canvas_geometry
from imdd_build.record import DefectAttributes, Record
from imdd_build.store import Store

CELLS = ["upper left", "upper center", "upper right", "center left", "center", "center right", "lower left",
         "lower center", "lower right"]
DEFECTS = [("scratch",), ("crack",), ("hole",), ("broken_large",), ("color",), ("combined",), ("crack", "hole")]


def records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        normal = i % 4 == 0
        cells = CELLS[i % 9: i % 9 + 1 + i % 3] or ["center"]
        attrs = {} if normal else dict(location=cells[0], locations=cells, area_fraction=(i % 50) / 400,
                                       regions=1 + i % 4, elongation=1 + i % 12,
                                       shape=["compact", "elongated", "scattered", "extensive"][i % 4],
                                       severity=["minor", "moderate", "severe"][i % 3], basis="mask")
        out.append(Record(key=f"bench/p{i % 7}/{i:07d}", source="mvtec", domain="metal_part", product=f"part_{i % 7}",
                          split="test", source_split="test", label="normal" if normal else "defective",
                          defect_types=[] if normal else list(DEFECTS[i % len(DEFECTS)]), source_path=f"{i}.png",
                          sha256=f"{i:064x}", orig_width=512, orig_height=512, orig_mode="RGB",
                          geometry=canvas_geometry(512, 512), image=f"{i:064x}.png", image_format="png",
                          license="CC0-1.0", attributes=DefectAttributes(**attrs)))
    return out


def bench_template(recs: list[Record]) -> tuple[float, float]:
    t = time.perf_counter()
    texts = [template_caption(r) for r in recs]
    plain = len(recs) / (time.perf_counter() - t)
    t = time.perf_counter()
    for r, text in zip(recs, texts):
        check_caption(r, text)
    checked = len(recs) / (time.perf_counter() - t + len(recs) / plain)
    return plain, checked


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (Linux /proc), or None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _box_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU jiffies of the whole machine since boot (Linux /proc/stat)."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _steady_rate(db: Path) -> float:
    """Answers/s between the 10th and 90th percentile of answer times: the sustained rate, without
    the start (process spawn, first connections) and the drain of the last requests."""
    con = sqlite3.connect(db)
    times = [t for (t,) in con.execute("SELECT created_at FROM llm_answers ORDER BY created_at")]
    con.close()
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    return (len(times) * 9 // 10 - len(times) // 10) / (hi - lo) if hi > lo else float("nan")


def bench_llm(recs: list[Record], latency: float, concurrency: int, jitter: float, processes: int) -> dict:
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llm_server.py"), "--latency", str(latency),
                               "--jitter", str(jitter)],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Catalog(Path(tmp) / "catalog.sqlite")
            catalog.upsert((r, "bench") for r in recs)
            os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-key")
            options = LLMOptions(base_url=f"http://127.0.0.1:{port}/v1", concurrency=concurrency, timeout=60,
                                 processes=processes)
            server_cpu, box = _cpu_seconds(server.pid), _box_jiffies()
            summary = caption_llm(catalog, Store(Path(tmp) / "store"), options, load_prices(options.model))
            server_cpu = None if server_cpu is None else _cpu_seconds(server.pid) - server_cpu
            box_after = _box_jiffies()
            box_busy = None if box is None or box_after is None else \
                (box_after[0] - box[0]) / max(1, box_after[1] - box[1])
            steady = _steady_rate(catalog.path)
            catalog.close()
    finally:
        server.terminate()
        server.wait()
    ideal = concurrency / latency
    elapsed, n = summary["elapsed_s"], summary["requests"]
    client_cpu = sum(summary["client_cpu_s"])
    return {"latency": latency, "processes": summary["processes"], "requests": n, "elapsed": elapsed,
            "rps": summary["requests_per_s"], "steady": steady, "ideal": ideal, "ratio": steady / ideal,
            "client_ms": 1000 * client_cpu / max(n, 1),
            "client_busy": client_cpu / (elapsed * summary["processes"]),
            "server_busy": None if server_cpu is None else server_cpu / elapsed, "box_busy": box_busy,
            "errors": summary["errors"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=4096)
    ap.add_argument("--template-records", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latencies", default="2.0,1.0,0.5,0.25")
    ap.add_argument("--processes", default="1,0", help="client processes to compare (0: auto, as the CLI default)")
    ap.add_argument("--jitter", type=float, default=0.2, help="server latency varies by +-this share")
    args = ap.parse_args()
    plain, checked = bench_template(records(args.template_records))
    print(f"template captioner: {plain:,.0f} captions/s; with checks: {checked:,.0f} captions/s "
          f"({args.template_records} records, one core)")
    print(f"\nLLM path, {args.concurrency} requests in flight, {args.records} records, local fake server in its own "
          f"process (latency +-{args.jitter:.0%}), {os.cpu_count()} CPU cores shared by client(s) and server.")
    print("steady req/s: answers/s between the 10th and 90th percentile of answer times; ratio = steady / ideal.")
    print("client ms/req: client CPU per request, all client processes; busy: CPU / wall, per process; "
          "box busy: all cores of the machine, whatever runs on them.\n")
    head = (f"{'latency s':>9} | {'procs':>5} | {'elapsed s':>9} | {'req/s':>7} | {'steady':>7} | {'ideal':>6} | "
            f"{'ratio':>5} | {'client ms/req':>13} | {'client busy':>11} | {'server busy':>11} | {'box busy':>8}")
    print(head)
    print("-" * len(head))
    for lat in (float(x) for x in args.latencies.split(",")):
        for procs in (int(x) for x in args.processes.split(",")):
            r = bench_llm(records(args.records), lat, args.concurrency, args.jitter, procs)
            server = "n/a" if r["server_busy"] is None else f"{r['server_busy']:.0%}"
            box = "n/a" if r["box_busy"] is None else f"{r['box_busy']:.0%}"
            print(f"{r['latency']:>9.2f} | {r['processes']:>5} | {r['elapsed']:>9.2f} | {r['rps']:>7.1f} | "
                  f"{r['steady']:>7.1f} | {r['ideal']:>6.0f} | {r['ratio']:>5.2f} | {r['client_ms']:>13.2f} | "
                  f"{r['client_busy']:>11.0%} | {server:>11} | {box:>8}" + (f"  errors {r['errors']}" if r["errors"] else ""),
                  flush=True)


if __name__ == "__main__":
    main()
