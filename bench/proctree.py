"""Memory of a process tree, from /proc: what the memory benches sample while a child runs."""

from __future__ import annotations

import os
import subprocess
import threading
import time


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
