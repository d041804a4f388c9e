"""The one Retry-After parser and backoff shared by the LLM client and the Hub uploader."""

import email.utils
import time

import httpx

from imdd_build.retry import Backoff, retry_after_seconds


def test_retry_after_in_every_form_the_servers_send():
    assert retry_after_seconds(None) is None
    assert retry_after_seconds(httpx.Headers({})) is None
    assert retry_after_seconds(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "0.5"})) == 0.5
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(httpx.Headers({"Retry-After": date})) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": past})) == 0.0
    assert retry_after_seconds(httpx.Headers({"Retry-After": "soon"})) is None


def test_backoff_doubles_with_jitter_up_to_the_cap():
    policy = Backoff(base=1.0, cap=5.0)
    for attempt, full in ((0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)):
        waits = [policy.delay(attempt) for _ in range(50)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > 0  # jittered, so parallel clients do not retry in step
