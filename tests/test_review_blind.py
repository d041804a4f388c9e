"""Blind double review through the real API, as two reviewers (no admins): nothing either sees tells how
the other answered, undo closes once both reviews are in, and agreement comes from first answers."""

from __future__ import annotations

import pytest
from conftest import Cli
from review_fixtures import ReviewServer, add_reviewer, review_workspace

pytest.importorskip("fastapi")

VARYING = ("key", "event_id")  # what may differ between two answers without telling anything


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ws = review_workspace(tmp_path_factory.mktemp("review-blind"))
    cli = Cli(ws)
    cli("review", "enqueue", "--sample-rate", "0", "--double-rate", "1.0")
    tokens = {"bob": add_reviewer(ws, "bob"), "carol": add_reviewer(ws, "carol"),
              "alice": add_reviewer(ws, "alice", admin=True)}
    with ReviewServer(ws) as server:
        clients = {name: server.client(token) for name, token in tokens.items()}
        yield {"ws": ws, "cli": cli, "c": clients}
        for c in clients.values():
            c.close()


def take(c) -> dict:
    r = c.post("/api/next")
    assert r.status_code == 200, r.text
    return r.json()


def answer(c, item: dict, decision: str, **extra) -> dict:
    r = c.post(f"/api/items/{item['key']}/review", json={"decision": decision, "version": item["version"], **extra})
    assert r.status_code == 200, r.text
    return r.json()


def strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in VARYING}


def test_the_second_reviewer_learns_nothing_of_the_first(env):
    bob, carol = env["c"]["bob"], env["c"]["carol"]
    # bob rejects X and accepts Y; carol accepts both: X is disputed, Y agreed
    x = take(bob)
    assert isinstance(x["version"], str) and not x["version"].isdigit()  # an opaque lease token, not a counter
    bob_x = answer(bob, x, "reject", reason="wrong_mask")
    y = take(bob)
    bob_y = answer(bob, y, "accept")
    assert strip(bob_x) == {**strip(bob_y), "decision": "reject"}
    seen = {}
    stats_before = carol.get("/api/stats").json()["overall"]
    for _ in range(2):
        item = take(carol)
        assert item["key"] in (x["key"], y["key"])
        assert item["caption"] == (x if item["key"] == x["key"] else y)["caption"]  # the draft, as bob saw it
        assert item["version"] not in (x["version"], y["version"])
        seen[item["key"]] = (answer(carol, item, "accept"), carol.get("/api/stats").json()["overall"])
    (carol_x, stats_x), (carol_y, stats_y) = seen[x["key"]], seen[y["key"]]
    # the same answer to an item that went to dispute and to one that agreed
    assert strip(carol_x) == strip(carol_y), (carol_x, carol_y)
    assert "state" not in carol_x and "outcome" not in carol_x
    # the header counts: only what changes the same way whatever the other said
    assert set(stats_x) == set(stats_y) == {"items", "open", "leased"}
    assert stats_before["open"] - stats_y["open"] == 2
    # each reviewer's own history shows the items as they were when deciding (no state, still a draft)
    for c in (bob, carol):
        history = c.get("/api/history?limit=10").json()["items"]
        shown = {h["key"]: h["item"] for h in history}
        assert shown[x["key"]]["state"] is None and shown[y["key"]]["state"] is None
        assert shown[x["key"]]["metadata"]["caption_status"] == shown[y["key"]]["metadata"]["caption_status"] == "draft"
        # and the items themselves are not theirs to look at once their lease is gone
        for key in (x["key"], y["key"]):
            assert c.get(f"/api/items/{key}").status_code == 404
    # undo is closed for both reviewers once both reviews are in, with the same words for each item
    refusals = set()
    for c, key in ((carol, x["key"]), (carol, y["key"]), (bob, x["key"]), (bob, y["key"])):
        event = next(h["event_id"] for h in c.get("/api/history?limit=10").json()["items"] if h["key"] == key)
        r = c.post("/api/undo", json={"event_id": event})
        assert r.status_code == 409, r.text
        refusals.add(r.json()["detail"])
    assert len(refusals) == 1
    # an admin sees it all
    admin = env["c"]["alice"]
    assert admin.get(f"/api/items/{x['key']}").json()["state"] == "disputed"
    assert {"done", "disputed"} <= set(admin.get("/api/stats").json()["overall"])


def test_agreement_counts_each_reviewers_first_answer(env):
    bob, carol = env["c"]["bob"], env["c"]["carol"]
    before = env["cli"]("review", "status")["agreement"]
    z = take(bob)
    answer(bob, z, "reject", reason="bad_image")
    undone = bob.post("/api/undo", json={}).json()  # before the second review: allowed
    assert undone["item"]["key"] == z["key"]
    answer(bob, undone["item"], "accept")  # bob changes his mind
    item = take(carol)
    assert item["key"] == z["key"]
    answer(carol, item, "accept")
    after = env["cli"]("review", "status")["agreement"]
    assert after["pairs"] == before["pairs"] + 1
    # bob's first answer was a reject: this pair disagrees, however the decisions in force look
    agreed_before = round(before["percent_agreement"] * before["pairs"])
    assert round(after["percent_agreement"] * after["pairs"]) == agreed_before
