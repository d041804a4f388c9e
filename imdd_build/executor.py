"""Run a picklable callable over items in parallel, in input order, with bounded in-flight work.

Two backends with one interface (`Executor.map(fn, items)`):

* `local` (default): a process pool on this machine. The callable is sent to each worker once
  (pool initializer), items travel in chunks, and at most `workers * inflight_per_worker` chunks
  are submitted but not yet yielded, so memory stays flat whatever the number of items.
* `ray`: the same chunks as Ray tasks on a local or remote Ray cluster (`imdd_build.ray_executor`,
  Ray imported only then).

Results come back in input order whatever the backend and worker count, so the caller commits
the same records in the same order (determinism).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar
from .errors import RunError

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (the last may be shorter); lazy."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_worker_fn: Callable[[Any], Any] | None = None


def _init_worker(fn: Callable[[Any], Any]) -> None:
    global _worker_fn
    _worker_fn = fn


def _run_chunk(chunk: list) -> list:
    assert _worker_fn is not None
    return [_worker_fn(item) for item in chunk]


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int, inflight_per_worker: int = 4,
                chunksize: int = 4) -> Iterator[R]:
    """`map(fn, items)` over `workers` processes; results in input order; at most
    `workers * inflight_per_worker` chunks of `chunksize` items submitted but not yet yielded."""
    if workers <= 1:
        yield from map(fn, items)
        return
    limit = max(1, workers * inflight_per_worker)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(fn,)) as pool:
        pending: deque = deque()
        for chunk in chunked(items, max(1, chunksize)):
            pending.append(pool.submit(_run_chunk, chunk))
            while len(pending) >= limit:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


class Executor:
    """Where per-sample work runs. `map(fn, items)` yields `fn(item)` in input order."""

    kind = "local"

    def __init__(self, workers: int = 1, inflight_per_worker: int = 4, chunksize: int = 4):
        self.workers = max(1, workers)
        self.inflight_per_worker = inflight_per_worker
        self.chunksize = chunksize

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return map_ordered(fn, items, self.workers, self.inflight_per_worker, self.chunksize)

    def describe(self) -> dict:
        return {"executor": self.kind, "workers": self.workers}


def make_executor(kind: str = "local", workers: int = 1, ray_address: str | None = None) -> Executor:
    """`local` (process pool of `workers`) or `ray` (tasks on the cluster at `ray_address`, or a
    local Ray instance when None; `workers` then only sizes the in-flight window)."""
    if kind == "local":
        if ray_address:
            raise RunError("--ray-address needs --executor ray")
        return Executor(workers)
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(workers=workers, address=ray_address)
    raise RunError(f"invalid executor {kind!r} ({' or '.join(EXECUTORS)})")
