"""The catalog writer of a `caption --llm` run: a thread with its own SQLite connection that commits
answers (and the caption write-backs built from them) as they arrive, so the event loop never waits
on a disk write or on another client process holding the write lock.

Answers are committed in group transactions: whatever arrived while the last commit ran goes into
the next one, usually within a millisecond or two of arriving. A kill loses at most the answers of
that window (they are re-sent by the next run), like the requests still in flight. Captions are
applied after the answers they come from, in batches (they can always be rebuilt from the answers).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from .cache import Answer, AnswerCache

_CLOSE = object()


class CatalogWriter:
    def __init__(self, catalog_path: Path, on_error: Callable[[str], None]):
        self.path = Path(catalog_path)
        self.on_error = on_error
        self.error: str | None = None
        self.answers_written = 0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="imdd-catalog-writer", daemon=True)
        self._thread.start()

    def answer(self, answer: Answer) -> None:
        self._q.put(answer)

    def captions(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        if updates:
            self._q.put(dict(updates))

    def close(self) -> None:
        """Commit everything queued, then stop the thread."""
        self._q.put(_CLOSE)
        self._thread.join()

    def _run(self) -> None:
        catalog = Catalog(self.path)
        cache = AnswerCache(catalog)
        try:
            closing = False
            while not closing:
                items = [self._q.get()]
                while True:
                    try:
                        items.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                answers = [x for x in items if isinstance(x, Answer)]
                if answers and not self.error:
                    self._write(lambda: cache.put_many(answers))
                    self.answers_written += len(answers)
                for x in items:
                    if isinstance(x, dict) and not self.error:
                        self._write(lambda x=x: catalog.write_captions(x))
                    closing = closing or x is _CLOSE
        finally:
            catalog.close()

    def _write(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a full disk or a broken catalog stops the run
            self.error = f"catalog write failed ({self.path}): {type(exc).__name__}: {exc}"
            self.on_error(self.error)
