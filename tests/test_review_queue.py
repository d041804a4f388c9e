"""The queue in-process: priorities and sampling, leases over time, blind double review, undo, the audit log,
crash recovery of catalog writes, and the indexed next-item query at a million-item scale."""

from __future__ import annotations

import json
import math
import sqlite3
import time

import pytest
from review_fixtures import BROKEN_KEY, Clock, q, review_workspace  # noqa: F401  (q is a fixture)

from imdd_build.catalog import Catalog
from imdd_build.review.auth import add_reviewer
from imdd_build.review.common import Conflict, NotFound
from imdd_build.review.queue import ReviewQueue


def people(q, *names):
    return [add_reviewer(q.db, n, admin=(n == "admin"))[0] for n in names]


def test_priority_failed_checks_then_stratified_sample_then_rest(q):
    s = q.enqueue(sample_rate=0.34, double_rate=0.0, seed=3)
    assert s["added"] == 42 and s["failed_checks"] == 1
    rows = q.db.execute("SELECT key, source, stratum, tier FROM review_queue").fetchall()
    assert [k for k, _, _, t in rows if t == 0] == [BROKEN_KEY]
    strata = {}
    for _, src, stratum, tier in rows:
        strata.setdefault((src, stratum), []).append(tier)
    for (src, stratum), tiers in strata.items():
        n = sum(1 for t in tiers if t >= 1)
        assert tiers.count(1) == min(n, math.ceil(0.34 * n)), (stratum, tiers)
    assert {s for _, s in strata} == {"normal", "scratch", "hole", "stain", "crack"}
    (a,) = people(q, "a")
    order = []
    while (item := q.next_item(a)) is not None:
        order.append(item["priority"])
        q.submit(a, item["key"], "accept", item["version"])
    assert order[0] == "failed_checks" and order == sorted(order, key=["failed_checks", "sample", "rest"].index)
    assert order.count("sample") == sum(t.count(1) for t in strata.values())
    # idempotent: enqueue again adds nothing; raising the rate samples more of what is left
    again = q.enqueue(sample_rate=1.0, double_rate=0.0, seed=3)
    assert again["added"] == 0 and again["queue"] == 42


def test_leases_expire_and_return_to_the_queue(q):
    q.enqueue(sample_rate=0, double_rate=0)
    a, b = people(q, "a", "b")
    x = q.next_item(a)
    y = q.next_item(b)
    assert y["key"] != x["key"]
    assert q.next_item(a)["key"] == x["key"]  # a's own lease comes back while it runs
    q.clock.now += 61  # both leases (60 s) ran out
    got = q.next_item(b)
    assert got["key"] == x["key"]  # x is the head of the queue again
    with pytest.raises(Conflict, match="not leased to you"):
        q.submit(a, x["key"], "accept", x["version"])
    assert q.submit(b, x["key"], "accept", got["version"])["state"] == "done"
    assert q.next_item(a)["key"] == y["key"]  # b's expired lease went back too


def test_expired_lease_still_counts_when_nobody_took_it(q):
    q.enqueue(sample_rate=0, double_rate=0)
    (a,) = people(q, "a")
    item = q.next_item(a)
    q.clock.now += 3600
    assert q.submit(a, item["key"], "accept", item["version"])["state"] == "done"


def test_double_review_is_blind_and_disagreement_goes_to_adjudication(q):
    q.enqueue(sample_rate=0, double_rate=1.0)
    a, b, admin = people(q, "a", "b", "admin")
    first = q.next_item(a)
    key = first["key"]
    draft = first["caption"]
    q.submit(a, key, "edit", first["version"], caption="An edited caption by a.")
    rec = q.catalog.get(key)
    assert rec.caption == draft and rec.caption_status == "draft"  # nothing applied before the second review
    second = q.next_item(b)
    assert second["key"] == key and second["caption"] == draft  # b sees the draft, not a's edit
    assert "decisions" not in second and "edit" not in json.dumps(second)
    with pytest.raises(Conflict):
        q.submit(a, key, "accept", second["version"])  # a cannot take it twice
    assert q.next_item(a)["key"] != key
    q.submit(b, key, "reject", second["version"], reason="wrong_mask")
    assert q._row(key)["state"] == "disputed"
    assert q.catalog.get(key).caption_status == "draft"
    listing = q.adjudication()
    entry = next(i for i in listing if i["key"] == key)
    assert [d["decision"] for d in entry["decisions"]] == ["edit", "reject"]
    q.adjudicate(admin, key, "edit", entry["version"], caption="An edited caption by a.")
    rec = q.catalog.get(key)
    assert rec.caption == "An edited caption by a." and rec.caption_source == "expert"
    assert rec.caption_meta["review"]["adjudicated_by"] == "admin"
    assert rec.caption_meta["review"]["reviewers"] == ["a", "b", "admin"]


def test_double_review_agreement_resolves_without_an_admin(q):
    q.enqueue(sample_rate=0, double_rate=1.0)
    a, b = people(q, "a", "b")
    x = q.next_item(a)
    q.submit(a, x["key"], "accept", x["version"])
    y = q.next_item(b)
    assert y["key"] == x["key"]
    out = q.submit(b, y["key"], "edit", y["version"], caption="  " + x["caption"] + " ")  # same text: an accept
    assert out["state"] == "done" and out["outcome"] == "accept"
    rec = q.catalog.get(x["key"])
    assert rec.caption_status == "verified" and rec.caption_meta["review"]["reviewers"] == ["a", "b"]


def test_undo_only_while_nothing_happened_since(q):
    q.enqueue(sample_rate=0, double_rate=1.0)
    a, b = people(q, "a", "b")
    x = q.next_item(a)
    q.submit(a, x["key"], "accept", x["version"])
    undone = q.undo(a)  # before the second review: a takes it back
    assert undone["item"]["key"] == x["key"] and q._row(x["key"])["decisions"] == 0
    q.submit(a, x["key"], "accept", undone["item"]["version"])
    y = q.next_item(b)
    q.submit(b, y["key"], "accept", y["version"])
    with pytest.raises(Conflict) as first:
        q.undo(a, q.history(a)[0]["event_id"])  # b decided after a
    with pytest.raises(Conflict) as second:
        q.undo(b)  # both reviews are in: closed for the second reviewer too
    assert str(first.value) == str(second.value)  # the same words: no hint of what the other did
    assert q.catalog.get(x["key"]).caption_status == "verified"
    assert q._row(x["key"])["state"] == "done" and q._row(x["key"])["decisions"] == 2


def test_undo_refuses_when_the_record_changed_meanwhile(q):
    q.enqueue(sample_rate=0, double_rate=0)
    (a,) = people(q, "a")
    x = q.next_item(a)
    q.submit(a, x["key"], "accept", x["version"])
    rec = q.catalog.get(x["key"])
    q.catalog.set_captions([rec.model_copy(update={"caption": "changed elsewhere"})])
    with pytest.raises(Conflict):
        q.undo(a)
    assert q.catalog.get(x["key"]).caption == "changed elsewhere"


def test_audit_log_is_append_only(q):
    q.enqueue(sample_rate=0, double_rate=0)
    (a,) = people(q, "a")
    x = q.next_item(a)
    q.submit(a, x["key"], "accept", x["version"])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        q.db.execute("UPDATE review_events SET reviewer = 'mallory'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        q.db.execute("DELETE FROM review_events")


def test_a_crash_between_decision_and_catalog_write_is_repaired(q, monkeypatch):
    q.enqueue(sample_rate=0, double_rate=0)
    (a,) = people(q, "a")
    x = q.next_item(a)

    def crash(*_args):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(q.outbox, "apply", crash)
    with pytest.raises(KeyboardInterrupt):
        q.submit(a, x["key"], "edit", x["version"], caption="Written after the crash.")
    assert q.catalog.get(x["key"]).caption_status == "draft"
    assert q.db.execute("SELECT COUNT(*) FROM review_outbox").fetchone()[0] == 1
    monkeypatch.undo()
    fresh = ReviewQueue(q.catalog, clock=q.clock)  # the next start
    assert fresh.drain() == 1
    rec = q.catalog.get(x["key"])
    assert rec.caption == "Written after the crash." and rec.caption_status == "verified"
    assert fresh.drain() == 0


def test_next_item_walks_an_index_and_stays_fast_with_many_items(q):
    plan = q.next_plan()
    assert "review_queue_next" in plan and "SCAN review_queue" not in plan.replace("USING INDEX", "")
    now = time.time()
    n = 300_000
    q.db.execute("BEGIN")
    q.db.executemany("INSERT INTO review_queue (key, source, stratum, tier, rank, required, enqueued_at, updated_at) "
                     "VALUES (?, 'big', 'normal', ?, ?, 1, ?, ?)",
                     ((f"big/{i:07d}", 2 if i % 10 else 1, (i * 2654435761) % (1 << 40), now, now) for i in range(n)))
    q.db.execute("COMMIT")
    (a,) = people(q, "a")
    # each lease reads the head of the index; these synthetic items have no record, so item() raises after
    # the lease committed, and the next call finds the lease (the reviewer's own) or the next head
    times, keys = [], set()
    for _ in range(50):
        t = time.perf_counter()
        with pytest.raises(NotFound) as exc:
            q.next_item(a)
        times.append(time.perf_counter() - t)
        keys.add(exc.value.args[0])
        q.db.execute("UPDATE review_queue SET state = 'done', lease_reviewer = NULL WHERE key = ?", (exc.value.args[0],))
    assert len(keys) == 50 and all(k.startswith("big/") for k in keys)
    assert sorted(times)[len(times) // 2] < 0.01, times
    t = time.perf_counter()
    q.progress(a)
    assert time.perf_counter() - t < 1.0
