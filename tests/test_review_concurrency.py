"""16 reviewer threads pull and submit against one server: no double lease, no lost decision, counts add up."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import threading
import time
from collections import Counter, defaultdict

import pytest
from conftest import Cli
from review_fixtures import ReviewServer, add_reviewer, review_workspace

pytest.importorskip("fastapi")

N_REVIEWERS = 16
CLONES = 560  # + 42 demo records = 602 items


def test_sixteen_reviewers_pull_and_submit(tmp_path):
    ws = review_workspace(tmp_path, clones=CLONES)
    enq = Cli(ws)("review", "enqueue", "--sample-rate", "0.1", "--double-rate", "0.3", "--seed", "7")
    n_items = enq["queue"]
    assert n_items == CLONES + 42
    tokens = [add_reviewer(ws, f"r{i:02d}") for i in range(N_REVIEWERS)]
    ok = defaultdict(list)  # reviewer -> [(key, decision)]
    conflicts = Counter()
    errors: list[str] = []
    start = threading.Barrier(N_REVIEWERS)
    busy = [N_REVIEWERS]  # reviewers between asking for an item and answering it (a skip reopens one)
    busy_lock = threading.Lock()

    with ReviewServer(ws) as server:
        def work(i: int) -> None:
            rng = random.Random(i)
            with server.client(tokens[i]) as c:
                start.wait()
                deadline = time.time() + 60
                while time.time() < deadline:
                    r = c.post("/api/next")
                    if r.status_code == 204:
                        with busy_lock:
                            busy[0] -= 1
                            idle = busy[0] == 0
                        if idle:  # nobody holds an item they might still skip: the queue is really empty
                            return
                        time.sleep(0.1)
                        with busy_lock:
                            busy[0] += 1
                        continue
                    if r.status_code != 200:
                        errors.append(f"next {r.status_code} {r.text}")
                        return
                    item = r.json()
                    roll = rng.random()
                    body = {"version": item["version"], "time_spent_ms": rng.randint(500, 9000)}
                    if roll < 0.6:
                        body["decision"] = "accept"
                    elif roll < 0.8:
                        body.update(decision="edit", caption=item["caption"] + f" Reviewed by r{i:02d}.")
                    elif roll < 0.95:
                        body.update(decision="reject", reason=rng.choice(["wrong_mask", "bad_image"]))
                    else:
                        body["decision"] = "skip"
                    s = c.post(f"/api/items/{item['key']}/review", json=body)
                    if s.status_code == 200:
                        ok[i].append((item["key"], body["decision"]))
                    elif s.status_code == 409:
                        conflicts[i] += 1
                    else:
                        errors.append(f"review {s.status_code} {s.text}")
                        return
                errors.append(f"reviewer {i} ran out of time")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(N_REVIEWERS)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.time() - t0
        with server.client(tokens[0]) as c:
            assert c.post("/api/next").status_code == 204
            stats = c.get("/api/stats").json()

    assert not errors, errors[:5]
    assert not any(t.is_alive() for t in threads)
    assert sum(conflicts.values()) == 0, conflicts  # every lease was exclusive: no reviewer was ever refused
    submitted = [(k, d) for items in ok.values() for k, d in items]
    decisions = [x for x in submitted if x[1] != "skip"]
    assert len(set(ok)) == N_REVIEWERS  # everyone got work

    db = sqlite3.connect(ws / "catalog.sqlite")
    try:
        rows = db.execute("SELECT key, required, decisions, state FROM review_queue").fetchall()
        required = {k: r for k, r, _, _ in rows}
        assert all(state in ("done", "disputed") for _, _, _, state in rows)
        assert all(done == req for _, req, done, _ in rows)
        # no decision lost: each 200 is one decision row and one event; counts add up
        assert db.execute("SELECT COUNT(*) FROM review_decisions").fetchone()[0] == len(decisions)
        assert len(decisions) == sum(required.values())
        actions = Counter(dict(db.execute("SELECT action, COUNT(*) FROM review_events GROUP BY action").fetchall()))
        sent = Counter(d for _, d in submitted)
        assert actions["skip"] == sent["skip"]
        assert actions["accept"] + actions["edit"] + actions["reject"] == len(decisions)
        assert actions["reject"] == sent["reject"]
        # per key: one decision per reviewer, never two leases at once (lease->decision intervals disjoint)
        per_key = defaultdict(list)
        for key, reviewer, data in db.execute("SELECT key, reviewer, data FROM review_events "
                                              "WHERE action IN ('accept', 'edit', 'reject', 'skip') ORDER BY id"):
            d = json.loads(data)
            per_key[key].append((d["leased_at"], d["time_spent_server"], reviewer))
        for key, spans in per_key.items():
            spans.sort()
            for (a0, a_len, _), (b0, _, _) in itertools.pairwise(spans):
                assert a0 + a_len <= b0 + 1e-6, (key, spans)
        reviewers_per_key = db.execute("SELECT key, COUNT(DISTINCT reviewer_id), COUNT(*) FROM review_decisions "
                                       "GROUP BY key").fetchall()
        assert all(distinct == n for _, distinct, n in reviewers_per_key)
        assert db.execute("SELECT COUNT(*) FROM review_outbox").fetchone()[0] == 0
        # the catalog holds every single-review outcome
        verified = db.execute("SELECT COUNT(*) FROM records r JOIN review_queue q ON q.key = r.key "
                              "WHERE q.state = 'done' AND r.caption_status IN ('verified', 'rejected')").fetchone()[0]
        done = db.execute("SELECT COUNT(*) FROM review_queue WHERE state = 'done'").fetchone()[0]
        assert verified == done
        assert db.execute("SELECT COUNT(*) FROM records r JOIN review_queue q ON q.key = r.key "
                          "WHERE q.state = 'disputed' AND r.caption_status != 'draft'").fetchone()[0] == 0
    finally:
        db.close()
    assert stats["overall"]["items"] == n_items and stats["overall"]["open"] == 0  # a reviewer's (blind) counts
    status = Cli(ws)("review", "status")
    assert sum(r["decisions"] for r in status["throughput"].values()) == len(decisions)
    assert status["agreement"]["pairs"] == sum(1 for r in required.values() if r == 2)
    print(f"{len(decisions)} decisions by {N_REVIEWERS} threads in {elapsed:.1f}s")
