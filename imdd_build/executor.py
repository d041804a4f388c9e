"""Run a picklable callable over items in worker processes, in order, with bounded in-flight work."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int, inflight_per_worker: int = 8) -> Iterator[R]:
    """`map(fn, items)` over `workers` processes; results in input order; at most
    workers * inflight_per_worker items submitted but not yet yielded (memory stays flat)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    limit = workers * inflight_per_worker
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
