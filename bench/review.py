"""Review app under load: 16 reviewer clients against a real `imdd-build review serve` on a large queue.

    .venv/bin/python bench/review.py [--items 200000] [--clients 16] [--seconds 120] [--double-rate 0.1]

The queue is built the way a user builds it: records through the Catalog API (`upsert`, then
`set_captions` with template drafts), `review enqueue`, reviewers added with `add-reviewer`; the
server runs as its own process. Each client loops: `POST /api/next`, then a decision (60% accept,
20% edit, 15% reject, 5% skip) sent with an `Idempotency-Key`, `GET /api/stats` every 5 items and
`GET /api/history` every 10. Printed: per-route request count and p50/p95/p99 latency, decisions/s
(items/s) and requests/s over the run, and the checks that must hold under load: no acknowledged
decision lost (every 200's event is in the audit log and in force), no item leased to two
reviewers at once (lease->decision intervals of each item are disjoint), and no 5xx.

The baseline in the same run is what `/api/stats` cost before the counts were kept by the
decisions' own transactions: a recount of the queue (GROUP BY state over every item), timed
in-process on the same catalog against today's read of the maintained counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from imdd_build.catalog import Catalog  # noqa: E402
from imdd_build.geometry import canvas_geometry  # noqa: E402
from imdd_build.record import Record  # noqa: E402
from imdd_build.review.auth import add_reviewer  # noqa: E402
from imdd_build.review.queue import ReviewQueue  # noqa: E402

DEFECTS = ["scratch", "crack", "hole", "stain"]


def build_queue(ws: Path, n: int, double_rate: float, clients: int) -> tuple[list[str], dict]:
    """n records with template-like drafts through the Catalog API, the review queue, and one token per client."""
    ws.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with Catalog(ws / "catalog.sqlite") as catalog:
        for start in range(0, n, 5000):
            batch = []
            for i in range(start, min(n, start + 5000)):
                normal = i % 5 == 0
                defect = DEFECTS[i % len(DEFECTS)]
                batch.append(Record(
                    key=f"bench/p{i % 7}/{i:07d}", source="bench", domain="metal_surface", product=f"part_{i % 7}",
                    split="test", source_split="test", label="normal" if normal else "defective",
                    defect_types=[] if normal else [defect], source_path=f"{i}.png", sha256=f"{i:064x}",
                    orig_width=256, orig_height=256, orig_mode="L", geometry=canvas_geometry(256, 256),
                    image=f"{i:064x}.png", image_format="png", license="CC0-1.0"))
            catalog.upsert([(r, f"fp{r.key}") for r in batch])
            catalog.set_captions([r.model_copy(update={
                "caption": (f"An industrial inspection image of a {r.product.replace('_', ' ')} " + (
                    "with no visible defects." if r.label == "normal" else f"showing a {r.defect_types[0]}.")),
                "caption_source": "template", "caption_status": "draft",
                "caption_meta": {"checks": {"passed": True}}}) for r in batch])
        built = time.perf_counter() - t
        q = ReviewQueue(catalog)
        t = time.perf_counter()
        summary = q.enqueue(sample_rate=0.05, double_rate=double_rate, seed=0)
        enqueued = time.perf_counter() - t
        tokens = [add_reviewer(catalog.db, f"r{i:02d}")[1] for i in range(clients)]
    return tokens, {"catalog_s": round(built, 1), "enqueue_s": round(enqueued, 1), "queue": summary["queue"]}


def stats_baseline(ws: Path, repeats: int = 20) -> dict:
    """ms per call: the old recount of every item (GROUP BY state) vs the counts the decisions keep."""
    with Catalog(ws / "catalog.sqlite") as catalog:
        q = ReviewQueue(catalog)
        out = {}
        for name, fn in (("recount_ms", q.recount), ("maintained_ms", q.progress)):
            fn()
            t = time.perf_counter()
            for _ in range(repeats):
                fn()
            out[name] = (time.perf_counter() - t) / repeats * 1000
        assert {s: q.progress()[s] for s in q.recount()} == q.recount(), "maintained counts drifted"
    out["ratio"] = out["recount_ms"] / max(out["maintained_ms"], 1e-9)
    return out


class Server:
    def __init__(self, ws: Path, port: int, root: Path = ROOT):
        self.url = f"http://127.0.0.1:{port}"
        self.log = (ws.parent / "server.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "imdd_build", "--workspace", str(ws), "review", "serve",
                                      "--port", str(port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(root)}, cwd=str(root))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/login", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def reviewer(url: str, token: str, seed: int, until: float, out: dict, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    lat: dict[str, list[float]] = defaultdict(list)
    acked, statuses = [], defaultdict(int)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        def call(route, method, path, **kw):
            t = time.perf_counter()
            r = c.request(method, path, **kw)
            lat[route].append(time.perf_counter() - t)
            statuses[r.status_code] += 1
            return r

        n = 0
        while time.time() < until:
            r = call("POST /api/next", "POST", "/api/next")
            if r.status_code != 200:
                break
            item = r.json()
            roll = rng.random()
            body = {"version": item["version"], "time_spent_ms": rng.randint(500, 9000)}
            if roll < 0.6:
                body["decision"] = "accept"
            elif roll < 0.8:
                body.update(decision="edit", caption=item["caption"] + f" Checked by reviewer {seed}.")
            elif roll < 0.95:
                body.update(decision="reject", reason=rng.choice(["wrong_mask", "bad_image"]))
            else:
                body["decision"] = "skip"
            r = call("POST /api/items/{key}/review", "POST", f"/api/items/{item['key']}/review", json=body,
                     headers={"Idempotency-Key": uuid.uuid4().hex})
            if r.status_code == 200 and body["decision"] != "skip":
                acked.append(r.json()["event_id"])
            n += 1
            if n % 5 == 0:
                call("GET /api/stats", "GET", "/api/stats")
            if n % 10 == 0:
                call("GET /api/history", "GET", "/api/history?limit=1")
    with lock:
        for k, v in lat.items():
            out["lat"][k].extend(v)
        out["acked"].extend(acked)
        for k, v in statuses.items():
            out["statuses"][k] += v


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000 if s else float("nan")


def checks(ws: Path, acked: list[int]) -> dict:
    db = sqlite3.connect(ws / "catalog.sqlite")
    try:
        in_force = {e for (e,) in db.execute("SELECT event_id FROM review_decisions")}
        logged = {e for (e,) in db.execute("SELECT id FROM review_events")}
        per_key = defaultdict(list)
        for key, data in db.execute("SELECT key, data FROM review_events WHERE action IN "
                                    "('accept', 'edit', 'reject', 'skip', 'flag') ORDER BY id"):
            d = json.loads(data)
            if d.get("leased_at") is not None and d.get("time_spent_server") is not None:
                per_key[key].append((d["leased_at"], d["leased_at"] + d["time_spent_server"]))
        double = sum(1 for spans in per_key.values() for (a0, a1), (b0, _) in itertools.pairwise(sorted(spans))
                     if a1 > b0 + 1e-6)
        return {"acknowledged": len(acked), "lost": len([e for e in acked if e not in in_force or e not in logged]),
                "double_leased": double, "duplicate_acks": len(acked) - len(set(acked))}
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--double-rate", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=None, help="JSON of the results (default bench/results/review-N.json)")
    ap.add_argument("--server-root", type=Path, default=ROOT, help="Run the server from another checkout (e.g. the "
                                                                   "code before a change) on the same queue.")
    args = ap.parse_args()
    from review_fixtures import free_port

    with tempfile.TemporaryDirectory(prefix="imdd-bench-review-") as tmp:
        ws = Path(tmp) / "ws"
        tokens, build = build_queue(ws, args.items, args.double_rate, args.clients)
        print(f"queue: {build['queue']} items (catalog {build['catalog_s']} s, enqueue {build['enqueue_s']} s)",
              file=sys.stderr)
        server = Server(ws, free_port(), args.server_root.resolve())
        out = {"lat": defaultdict(list), "acked": [], "statuses": defaultdict(int)}
        lock = threading.Lock()
        until = time.time() + args.seconds
        t0 = time.perf_counter()
        threads = [threading.Thread(target=reviewer, args=(server.url, tok, i, until, out, lock))
                   for i, tok in enumerate(tokens)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server.stop()
        result = {"items": build["queue"], "clients": args.clients, "seconds": round(elapsed, 1),
                  "server_root": str(args.server_root),
                  "cores": os.cpu_count(), "build": build,
                  "routes": {route: {"n": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "p99_ms": pct(v, 99)}
                             for route, v in sorted(out["lat"].items())},
                  "items_per_s": len(out["acked"]) / elapsed,
                  "requests_per_s": sum(len(v) for v in out["lat"].values()) / elapsed,
                  "statuses": dict(out["statuses"]), "checks": checks(ws, out["acked"]),
                  "stats_baseline": stats_baseline(ws)}
    print("| route | requests | p50 ms | p95 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for route, r in result["routes"].items():
        print(f"| `{route}` | {r['n']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} |")
    c, b = result["checks"], result["stats_baseline"]
    print(f"\n{result['items']} items, {args.clients} clients, {result['seconds']} s: "
          f"{result['items_per_s']:.1f} items/s, {result['requests_per_s']:.1f} requests/s; statuses "
          f"{dict(sorted(result['statuses'].items()))}")
    print(f"checks: {c['acknowledged']} acknowledged decisions, {c['lost']} lost, {c['double_leased']} double-leased, "
          f"{c['duplicate_acks']} duplicate acks")
    print(f"stats baseline: recount {b['recount_ms']:.2f} ms vs maintained counts {b['maintained_ms']:.3f} ms "
          f"(ratio {b['ratio']:.0f}x)")
    path = args.out or ROOT / "bench" / "results" / f"review-{args.items}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    bad = c["lost"] or c["double_leased"] or any(int(s) >= 500 for s in result["statuses"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
