"""How a training run stops: SIGINT/SIGTERM turned into a flag the loop checks after each step, and the exit of a
multi-process run that skips the teardown which can hang in gloo."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopSignals:
    """SIGINT/SIGTERM set `received` (the loop stops after the current step); a second SIGINT raises
    KeyboardInterrupt. SIGINT left ignored (a background job) stays ignored. Main thread only."""

    def __init__(self):
        self.received: str | None = None

    def _handle(self, signum, _frame) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if sig == signal.SIGINT and current in (signal.SIG_IGN, None):
                continue
            previous[sig] = current
            signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def stop_exit_code(stopped: str | None) -> int:
    """The exit code of a run stopped by `stopped` (a signal name, or another rank's): 128 + the signal, as a
    shell reports it (SIGTERM 143, else SIGINT's 130); 0 when it was not stopped."""
    return 0 if not stopped else 143 if stopped == "SIGTERM" else 130


def exit_without_teardown(code: int) -> None:
    """End a multi-process training process now, its output flushed, without Python's teardown. Freeing the DDP
    reducer joins gloo's worker threads while holding the GIL, and a worker still freeing a collective's tensors
    waits for the GIL: the process then hangs for good after training (about every other 2-process CPU run,
    torch 2.13). `imdd-models train-diffusion` calls this through `on_done` while the models are still alive."""
    import os
    import sys
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
