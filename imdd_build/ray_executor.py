"""The Ray backend: the same per-sample work as the local pool, as Ray tasks (`--executor ray`).

Ray is an optional extra (`pip install -e '.[ray]'`) and is imported only when this backend is
chosen. The driver (the `imdd-build ingest` process) lists the source, sends chunks of jobs as
tasks, gets the outcomes back in input order and commits them to the catalog itself, exactly as
with the local pool; only decoding, resizing, encoding and writing the content store run in the
tasks. So the catalog, and everything written from it, is byte-identical to a local run.

On a multi-node cluster every node needs the same imdd version installed, and the source roots and
the workspace (its `store/`) at the same paths on a shared filesystem: tasks read the source files
and write normalized files into the store by content hash; the driver alone writes the catalog.
"""

from __future__ import annotations

import importlib.util
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .executor import Executor, chunked
from .errors import RunError


def _ray():
    try:
        import ray
    except ImportError as exc:  # a run-level error, not a traceback
        raise RunError("--executor ray needs Ray: pip install 'imdd[ray]' (or pip install ray)") from exc
    return ray


_remote_cache: dict[int, Any] = {}


def _run_chunk_remote(ray):
    key = id(ray)
    if key not in _remote_cache:
        @ray.remote(num_cpus=1, max_retries=3)
        def run_chunk(fn: Callable[[Any], Any], chunk: list) -> list:
            return [fn(item) for item in chunk]

        _remote_cache[key] = run_chunk
    return _remote_cache[key]


class RayExecutor(Executor):
    """Chunks of items as Ray tasks, results yielded in input order, bounded in-flight window.

    `address`: a running cluster (`ray://head:10001`, `auto`, or `host:6379`); None connects to
    `RAY_ADDRESS` when set, else starts a local Ray instance for the run (and stops it after).
    """

    kind = "ray"

    def __init__(self, workers: int = 1, address: str | None = None, inflight_per_cpu: int = 4,
                 chunksize: int = 8):
        super().__init__(workers, inflight_per_cpu, chunksize)
        self.address = address
        if importlib.util.find_spec("ray") is None:
            _ray()  # the install hint as a run-level error, before any work

    def _connect(self):
        ray = _ray()
        started = False
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"address": address, "log_to_driver": False,
                                      "include_dashboard": False}
            if address is None:  # a local instance just for this run, sized like the local pool
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
            started = True
        return ray, started

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        ray, started = self._connect()
        try:
            cpus = int(ray.cluster_resources().get("CPU", self.workers)) or 1
            limit = max(cpus, self.workers) * self.inflight_per_worker
            run_chunk = _run_chunk_remote(ray)
            fn_ref = ray.put(fn)  # shipped once, not with every task
            pending: deque = deque()
            for chunk in chunked(items, self.chunksize):
                pending.append(run_chunk.remote(fn_ref, chunk))
                while len(pending) >= limit:
                    yield from ray.get(pending.popleft())
            while pending:
                yield from ray.get(pending.popleft())
        finally:
            if started:
                ray.shutdown()

    def describe(self) -> dict:
        return {"executor": self.kind, "workers": self.workers, "ray_address": self.address}
