"""What a child process costs: the memory of its tree, from /proc (what the memory benches sample while a child
runs), and the wall and CPU seconds of one timed CLI call (`timed_cli`)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


def tree_pids(root_pid: int) -> list[int]:
    """root_pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    pids, stack = [], [root_pid]
    while stack:
        pids.append(stack.pop())
        stack.extend(children.get(pids[-1], []))
    return pids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss_kb(root_pid: int) -> tuple[int, int]:
    """(RSS of root_pid, RSS of root_pid and all its descendants) in KiB."""
    pids = tree_pids(root_pid)
    return _rss_kb(root_pid), sum(_rss_kb(pid) for pid in pids)


def tree_pss_kb(root_pid: int) -> int:
    """PSS of root_pid and its descendants in KiB: pages shared after a fork counted once in all,
    where the RSS sum counts them in every process."""
    total = 0
    for pid in tree_pids(root_pid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


def watch(proc: subprocess.Popen, pss: bool = False, every: float = 0.1) -> tuple[str, dict, list[tuple[float, int]]]:
    """Wait for `proc`, sampling its tree every `every` s: (its stdout, peaks in KiB (`driver_kb`,
    `tree_kb`, and `pss_kb` with `pss`), samples of (seconds since start, tree RSS KiB))."""
    peak = {"driver_kb": 0, "tree_kb": 0, **({"pss_kb": 0} if pss else {})}
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            own, tree = tree_rss_kb(proc.pid)
            peak["driver_kb"], peak["tree_kb"] = max(peak["driver_kb"], own), max(peak["tree_kb"], tree)
            if pss:
                peak["pss_kb"] = max(peak["pss_kb"], tree_pss_kb(proc.pid))
            samples.append((time.perf_counter() - t0, tree))
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    stop.set()
    thread.join()
    return out, peak, samples


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every waited-for child so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_cli(args: list[str], env: dict, log: Path, cwd: Path) -> tuple[dict, float, float]:
    """`python -m ARGS --json` in `cwd`: (its JSON last line, wall seconds, CPU seconds); its output is appended
    to `log`, and a failure ends the bench naming the call."""
    t, c = time.perf_counter(), children_cpu_s()
    proc = subprocess.run([sys.executable, "-m", *args, "--json"], env=env, cwd=cwd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, children_cpu_s() - c
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(args)}\n{proc.stderr[-4000:]}\n{proc.stdout[-4000:]}\n")
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, cpu
