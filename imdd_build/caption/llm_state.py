"""Run-wide state of `caption --llm`: the cost budget, the record limit, the 429 pause and the reason
the run stopped. `RunState` serves one process; `SharedRunState` (same methods) lives in shared
memory, so the client processes of `--processes N` spend one budget, honour one limit and one
Retry-After pause, and all stop when one of them meets a fatal error.

Times are `time.monotonic()` (what asyncio's loop clock reads), the same clock in every process.
"""

from __future__ import annotations

from typing import Any

STOP_REASONS = ("max_cost", "interrupted")


class RunState:
    def __init__(self, max_cost: float | None = None, limit: int | None = None):
        self.max_cost, self.limit = max_cost, limit
        self.spent = self.reserved = 0.0
        self.taken = 0
        self.limited = False
        self._pause_until = 0.0
        self.stopped: str | None = None
        self.fatal: str | None = None

    # budget ------------------------------------------------------------------------------------
    def reserve(self, est: float) -> bool:
        """Hold `est` USD for a request about to be sent; False (and stop) if it would break the budget."""
        if self.stopped or self.fatal:
            return False
        if self.max_cost is not None and self.spent + self.reserved + est > self.max_cost:
            self.stop("max_cost")
            return False
        self.reserved += est
        return True

    def settle(self, est: float, cost: float) -> None:
        """The request is over: drop its hold and book what it really cost (0 when it failed)."""
        self.reserved -= est
        self.spent += cost

    def take(self) -> bool:
        """Count one more record against `--limit`; False once the limit is reached."""
        if self.limit is not None and self.taken >= self.limit:
            self.limited = True
            return False
        self.taken += 1
        return True

    # pause, stop, fatal ------------------------------------------------------------------------
    def pause_until(self) -> float:
        return self._pause_until

    def pause(self, until: float) -> None:
        self._pause_until = max(self._pause_until, until)

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason

    def fail(self, message: str) -> None:
        self.fatal = self.fatal or message

    @property
    def halted(self) -> bool:
        return bool(self.stopped or self.fatal)


class SharedRunState(RunState):
    """`RunState` in shared memory, passed to spawned client processes. Reads take no lock (aligned
    doubles and ints); read-modify-writes hold the one lock."""

    _FATAL_BYTES = 400

    def __init__(self, ctx: Any, max_cost: float | None = None, limit: int | None = None):
        self.max_cost, self.limit = max_cost, limit
        self._lock = ctx.Lock()
        self._money = ctx.RawArray("d", 3)  # spent, reserved, pause_until
        self._ints = ctx.RawArray("q", 3)  # taken, limited, stop reason (index+1 into STOP_REASONS)
        self._fatal = ctx.RawArray("c", self._FATAL_BYTES)

    @property
    def spent(self) -> float:
        return self._money[0]

    @property
    def reserved(self) -> float:
        return self._money[1]

    @property
    def taken(self) -> int:
        return self._ints[0]

    @property
    def limited(self) -> bool:
        return bool(self._ints[1])

    @property
    def stopped(self) -> str | None:
        code = self._ints[2]
        return STOP_REASONS[code - 1] if code else None

    @property
    def fatal(self) -> str | None:
        raw = self._fatal.raw.rstrip(b"\0")
        return raw.decode("utf-8", "replace") if raw else None

    def reserve(self, est: float) -> bool:
        if self._ints[2] or self._fatal[0] != b"\0":
            return False
        with self._lock:
            if self.max_cost is not None and self._money[0] + self._money[1] + est > self.max_cost:
                self._ints[2] = self._ints[2] or STOP_REASONS.index("max_cost") + 1
                return False
            self._money[1] += est
        return True

    def settle(self, est: float, cost: float) -> None:
        with self._lock:
            self._money[1] -= est
            self._money[0] += cost

    def take(self) -> bool:
        with self._lock:
            if self.limit is not None and self._ints[0] >= self.limit:
                self._ints[1] = 1
                return False
            self._ints[0] += 1
        return True

    def pause_until(self) -> float:
        return self._money[2]

    def pause(self, until: float) -> None:
        with self._lock:
            self._money[2] = max(self._money[2], until)

    def stop(self, reason: str) -> None:
        with self._lock:
            self._ints[2] = self._ints[2] or STOP_REASONS.index(reason) + 1

    def fail(self, message: str) -> None:
        data = message.encode("utf-8", "replace")[: self._FATAL_BYTES - 1]
        with self._lock:
            if self._fatal[0] == b"\0":
                self._fatal[: len(data)] = data
