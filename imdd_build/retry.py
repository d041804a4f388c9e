"""Retries of remote calls: one `Retry-After` parser and one backoff, for the LLM client (`caption --llm`)
and the Hugging Face Hub uploader (`push-to-hub`).

Each client decides which errors are transient (its own status codes and exceptions); both then wait what
the server asked (`retry_after_seconds`) or an exponential backoff with jitter (`Backoff.delay`). The
defaults live here as module constants; tests shorten them by replacing a constant (or by passing a
`Backoff` to the client), never through the environment or a hidden command-line option.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backoff:
    """How often to retry and how long to wait: attempt n waits uniform in [d/2, d], d = min(cap, base * 2**n)."""

    base: float
    cap: float
    max_retries: int = 6

    def delay(self, attempt: int) -> float:
        return backoff(attempt, self.base, self.cap)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(cap, base * 2**attempt)."""
    d = min(cap, base * (2 ** attempt))
    return random.uniform(d / 2, d)


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds: `retry-after-ms`, `retry-after` seconds, or an HTTP date; None without one."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


LLM_BACKOFF = Backoff(base=0.5, cap=30.0)  # per request; `--max-retries` sets the count
HUB_BACKOFF = Backoff(base=2.0, cap=120.0, max_retries=6)  # per Hub API call or commit
