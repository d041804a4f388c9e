"""Leases and counts in-process: one lease per reviewer whatever they skip and undo, leases that are not
renewed by asking again, skips that do not lengthen the next-item walk, and state counts that the
decisions' own transactions keep equal to a recount."""

from __future__ import annotations

import pytest
from review_fixtures import Clock, q, review_workspace  # noqa: F401  (q is a fixture)

from imdd_build.catalog import Catalog
from imdd_build.review.auth import add_reviewer
from imdd_build.review.common import MAX_SKIPS
from imdd_build.review.queue import ReviewQueue
from imdd_build.review.store import NEXT_SQL


def held(q, reviewer) -> list[str]:
    return [k for (k,) in q.db.execute("SELECT key FROM review_queue WHERE lease_reviewer = ? AND lease_until >= ?",
                                       (reviewer.id, q.clock()))]


def test_skip_and_undo_never_give_one_reviewer_two_leases(q):
    q.enqueue(sample_rate=0, double_rate=0)
    a = add_reviewer(q.db, "a")[0]
    item = q.next_item(a)
    skipped = []
    for _ in range(10):  # skip, take the next, undo the skip (the skipped item comes back), again
        q.submit(a, item["key"], "skip", item["version"])
        skipped.append(item["key"])
        current = q.next_item(a)
        back = q.undo(a)["item"]
        assert back["key"] == item["key"]
        assert held(q, a) == [back["key"]], held(q, a)  # the other lease went back to the queue
        assert q._row(current["key"])["lease_reviewer"] is None
        item = back
    assert len(held(q, a)) == 1


def test_asking_again_does_not_renew_a_lease(q):
    q.enqueue(sample_rate=0, double_rate=0)
    a, b = (add_reviewer(q.db, n)[0] for n in ("a", "b"))
    first = q.next_item(a)
    for _ in range(2):
        q.clock.now += 25
        again = q.next_item(a)
        assert again["key"] == first["key"] and again["lease_until"] == first["lease_until"]
        assert again["version"] == first["version"]
    q.clock.now += 25
    assert q.next_item(b)["key"] == first["key"]  # 75 s > the 60 s lease: it went back and b has it now


def _steps(q, reviewer) -> int:
    """SQLite VM steps of the next-item query for the reviewer (deterministic, unlike a stopwatch)."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    q.db.set_progress_handler(count, 1)
    try:
        q.db.execute(NEXT_SQL, {"now": q.clock(), "r": reviewer.id}).fetchall()
    finally:
        q.db.set_progress_handler(None, 1)
    return steps[0]


def test_skips_do_not_slow_the_next_item_query(tmp_path):
    ws = review_workspace(tmp_path, clones=560)
    with Catalog(ws / "catalog.sqlite") as catalog:
        q = ReviewQueue(catalog, lease_seconds=60, clock=Clock())
        q.enqueue(sample_rate=0, double_rate=0)
        a, b = (add_reviewer(q.db, n)[0] for n in ("a", "b"))
        fresh = _steps(q, b)

        def skip(n):
            for _ in range(n):
                item = q.next_item(a)
                q.submit(a, item["key"], "skip", item["version"])

        skip(MAX_SKIPS)
        at_cap = _steps(q, a)
        skip(4 * MAX_SKIPS)  # 500 skips in all, every one at the head of the queue
        assert q.db.execute("SELECT COUNT(*) FROM review_skips WHERE reviewer_id = ?", (a.id,)).fetchone()[0] \
            == MAX_SKIPS
        assert _steps(q, a) <= at_cap * 1.1, (fresh, at_cap, _steps(q, a))  # not five times the walk
        assert q.next_item(a) is not None  # and the queue goes on for them


def test_state_counts_stay_equal_to_a_recount(q):
    q.enqueue(sample_rate=0.2, double_rate=0.3, seed=5)
    a, b, admin = (add_reviewer(q.db, n, admin=(n == "admin"))[0] for n in ("a", "b", "admin"))
    assert q.progress() == {**q.progress(), **q.recount()}
    decisions = ["accept", "reject", "edit", "flag", "skip"]
    for i in range(30):
        who = (a, b)[i % 2]
        item = q.next_item(who)
        if item is None:
            break
        d = decisions[i % len(decisions)]
        extra = {"reason": "bad_image"} if d == "reject" else {"caption": "An edited caption."} if d == "edit" else {}
        q.submit(who, item["key"], d, item["version"], **extra)
        if i % 7 == 3:
            try:
                q.undo(who)
            except Exception:
                pass
    for entry in q.adjudication():
        q.adjudicate(admin, entry["key"], "accept", entry["version"])
    counts = q.progress()
    assert {s: counts[s] for s in ("open", "done", "disputed", "flagged")} == q.recount()
    assert counts["done"] > 0 and counts["items"] == 42
    # the counts live in the same transaction as the change: a rolled-back decision leaves them as they were
    item = q.next_item(a)
    before = q.progress()
    q.db.execute("BEGIN IMMEDIATE")
    q.db.execute("UPDATE review_queue SET state = 'done' WHERE key = ?", (item["key"],))
    q.db.execute("ROLLBACK")
    assert q.progress() == before and q.recount()["open"] == before["open"]
