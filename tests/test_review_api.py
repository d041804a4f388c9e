"""The review JSON API against a real `imdd-build review serve` process."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import Cli
from review_fixtures import BROKEN_KEY, ReviewServer, add_reviewer, review_workspace

from imdd_build.catalog import Catalog
from imdd_build.store import Store

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ws = review_workspace(tmp_path_factory.mktemp("review-api"))
    cli = Cli(ws)
    cli("review", "enqueue", "--sample-rate", "0.25", "--double-rate", "0")
    tokens = {"alice": add_reviewer(ws, "alice", admin=True), "bob": add_reviewer(ws, "bob"),
              "carol": add_reviewer(ws, "carol")}
    with ReviewServer(ws) as server:
        clients = {name: server.client(token) for name, token in tokens.items()}
        yield {"ws": ws, "server": server, "tokens": tokens, "c": clients, "cli": cli}
        for c in clients.values():
            c.close()


def record(ws, key):
    with Catalog(ws / "catalog.sqlite") as catalog:
        return catalog.get(key)


def events(ws, key):
    db = sqlite3.connect(ws / "catalog.sqlite")
    try:
        return [(a, r, json.loads(d)) for a, r, d in db.execute(
            "SELECT action, reviewer, data FROM review_events WHERE key = ? ORDER BY id", (key,))]
    finally:
        db.close()


def take(client):
    r = client.post("/api/next")
    assert r.status_code == 200, r.text
    return r.json()


def test_next_gives_the_failed_draft_first_with_everything_the_page_needs(env):
    item = take(env["c"]["alice"])
    assert item["key"] == BROKEN_KEY and item["priority"] == "failed_checks"
    assert item["checks"]["passed"] is False and item["checks"]["reasons"]
    assert item["caption"] == "Nice picture of a plate."
    assert item["image_url"] == f"/api/items/{BROKEN_KEY}/image" and item["mask_url"].endswith("/mask")
    assert item["metadata"]["source"] == "demo" and item["metadata"]["defect_types"] == ["scratch"]
    assert isinstance(item["version"], str) and len(item["version"]) >= 16  # an opaque lease token
    # asking again returns the same lease and token (a reload does not lose the item, nor renew the lease)
    again = take(env["c"]["alice"])
    assert again["key"] == BROKEN_KEY and again["version"] == item["version"]
    assert again["lease_until"] == item["lease_until"]
    stale = env["c"]["alice"].post(f"/api/items/{BROKEN_KEY}/review", json={"decision": "accept",
                                                                            "version": item["version"] + "x"})
    assert stale.status_code == 409 and "stale" in stale.json()["detail"]
    # image and mask are the stored bytes
    rec = record(env["ws"], BROKEN_KEY)
    store = Store(env["ws"] / "store")
    img = env["c"]["bob"].get(item["image_url"])
    assert img.status_code == 200 and img.content == store.read(rec.image)
    assert img.headers["content-type"] == ("image/png" if rec.image_format == "png" else "image/jpeg")
    mask = env["c"]["bob"].get(item["mask_url"])
    assert mask.status_code == 200 and mask.content == store.read(rec.mask)
    # edit it into a good caption: the expert text, its diff and the checks land in the catalog
    good = ("An industrial inspection image of a metal plate showing a scratch defect in the upper left area. "
            "It is a single thin and elongated mark covering well under one percent of the visible surface, "
            "a minor defect; the rest of the plate looks intact.")
    r = env["c"]["alice"].post(f"/api/items/{BROKEN_KEY}/review", json={
        "decision": "edit", "caption": good, "version": again["version"], "time_spent_ms": 4200})
    assert r.status_code == 200 and r.json()["state"] == "done" and r.json()["outcome"] == "edit"
    rec = record(env["ws"], BROKEN_KEY)
    assert rec.caption == good and rec.caption_source == "expert" and rec.caption_status == "verified"
    review = rec.caption_meta["review"]
    assert review["reviewers"] == ["alice"] and review["draft"] == "Nice picture of a plate."
    assert review["diff"] and review["guideline_version"].startswith("reviewer_guide@1")
    (action, who, data), = events(env["ws"], BROKEN_KEY)
    assert (action, who) == ("edit", "alice") and data["time_spent"] == pytest.approx(4.2)
    assert data["diff"] and data["before"]["caption"] == "Nice picture of a plate." and data["after"]["caption"] == good
    assert data["time_spent_server"] is not None and data["guideline_version"] == review["guideline_version"]


def test_accept_reject_with_label_correction_and_validation(env):
    c = env["c"]["bob"]
    item = take(c)
    key = item["key"]
    assert item["priority"] == "sample"
    bad = c.post(f"/api/items/{key}/review", json={"decision": "reject", "version": item["version"]})
    assert bad.status_code == 422 and "reason" in bad.json()["detail"]
    bad = c.post(f"/api/items/{key}/review", json={"decision": "maybe", "version": item["version"]})
    assert bad.status_code == 422
    bad = c.post(f"/api/items/{key}/review", json={"decision": "accept"})
    assert bad.status_code == 422  # no version
    bad = c.post(f"/api/items/{key}/review", json={"decision": "reject", "reason": "wrong_defect_label",
                                                   "labels": {"label": "defective", "defect_types": ["nonsense"]},
                                                   "version": item["version"]})
    assert bad.status_code == 422 and "defect_types[0]" in bad.json()["detail"]
    assert "nonsense" not in bad.text  # errors name the field, never echo the input
    before = record(env["ws"], key)
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        fingerprint = catalog.fingerprint(key)
    new_label = {"label": "defective", "defect_types": ["stain"]} if before.label == "normal" else \
        {"label": "normal", "defect_types": []}
    r = c.post(f"/api/items/{key}/review", json={"decision": "reject", "reason": "wrong_defect_label",
                                                 "labels": new_label, "version": item["version"]})
    assert r.status_code == 200 and r.json()["outcome"] == "reject"
    after = record(env["ws"], key)
    assert after.caption_status == "rejected" and after.caption == before.caption
    assert after.label == new_label["label"] and after.defect_types == new_label["defect_types"]
    assert after.caption_meta["review"]["reason"] == "wrong_defect_label"
    assert after.caption_meta["review"]["label_correction"]["before"]["label"] == before.label
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        assert catalog.fingerprint(key) == fingerprint  # the label correction keeps the input fingerprint
    # a plain accept
    item = take(c)
    r = c.post(f"/api/items/{item['key']}/review", json={"decision": "accept", "version": item["version"]})
    assert r.status_code == 200
    rec = record(env["ws"], item["key"])
    assert rec.caption_status == "verified" and rec.caption_source == "template" and rec.caption == item["caption"]


def test_only_the_lease_holder_can_decide(env):
    item = take(env["c"]["carol"])
    r = env["c"]["bob"].post(f"/api/items/{item['key']}/review", json={"decision": "accept",
                                                                        "version": item["version"]})
    assert r.status_code == 409 and "not leased to you" in r.json()["detail"]
    other = take(env["c"]["bob"])
    assert other["key"] != item["key"]
    for name, it in (("carol", item), ("bob", other)):
        assert env["c"][name].post(f"/api/items/{it['key']}/review",
                                   json={"decision": "accept", "version": it["version"]}).status_code == 200
    # a decided item cannot be decided again
    r = env["c"]["carol"].post(f"/api/items/{item['key']}/review", json={"decision": "accept",
                                                                          "version": item["version"]})
    assert r.status_code == 409


def test_skip_hands_the_item_to_someone_else(env):
    item = take(env["c"]["carol"])
    r = env["c"]["carol"].post(f"/api/items/{item['key']}/review", json={"decision": "skip",
                                                                          "version": item["version"]})
    assert r.status_code == 200 and r.json()["state"] == "open"
    mine = take(env["c"]["carol"])
    assert mine["key"] != item["key"]
    theirs = take(env["c"]["bob"])
    assert theirs["key"] == item["key"]
    for name, it in (("carol", mine), ("bob", theirs)):
        env["c"][name].post(f"/api/items/{it['key']}/review", json={"decision": "skip", "version": it["version"]})


def test_undo_restores_the_record_and_gives_the_item_back(env):
    c = env["c"]["carol"]
    item = take(c)
    key = item["key"]
    draft = record(env["ws"], key)
    assert c.post(f"/api/items/{key}/review", json={"decision": "edit", "caption": "A new text entirely.",
                                                    "version": item["version"]}).status_code == 200
    assert record(env["ws"], key).caption == "A new text entirely."
    hist = c.get("/api/history").json()["items"]
    assert hist[0]["key"] == key and hist[0]["decision"] == "edit" and hist[0]["item"]["caption"] == draft.caption
    r = c.post("/api/undo", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"] == key and body["item"]["key"] == key
    restored = record(env["ws"], key)
    assert restored.caption == draft.caption and restored.caption_status == "draft"
    assert restored.caption_meta == draft.caption_meta and restored.caption_source == draft.caption_source
    assert [a for a, _, _ in events(env["ws"], key)] == ["edit", "undo"]
    # the item is leased back: decide it again with the fresh version
    assert c.post(f"/api/items/{key}/review", json={"decision": "accept",
                                                    "version": body["item"]["version"]}).status_code == 200
    # someone else's decision cannot be undone
    ev = c.get("/api/history").json()["items"][0]["event_id"]
    assert env["c"]["bob"].post("/api/undo", json={"event_id": ev}).status_code == 404


def test_flag_and_adjudication_are_for_admins(env):
    c = env["c"]["bob"]
    item = take(c)
    r = c.post(f"/api/items/{item['key']}/review", json={"decision": "flag", "note": "label looks wrong",
                                                         "version": item["version"]})
    assert r.status_code == 200 and r.json()["state"] == "flagged"
    assert c.get("/api/adjudication").status_code == 403
    listing = env["c"]["alice"].get("/api/adjudication").json()["items"]
    flagged = next(i for i in listing if i["key"] == item["key"])
    assert flagged["decisions"][0]["reviewer"] == "bob" and flagged["decisions"][0]["decision"] == "flag"
    assert c.post(f"/api/items/{item['key']}/adjudicate",
                  json={"decision": "accept", "version": flagged["version"]}).status_code == 403
    r = env["c"]["alice"].post(f"/api/items/{item['key']}/adjudicate",
                               json={"decision": "reject", "reason": "bad_image", "version": flagged["version"]})
    assert r.status_code == 200 and r.json()["state"] == "done"
    rec = record(env["ws"], item["key"])
    assert rec.caption_status == "rejected" and rec.caption_meta["review"]["adjudicated_by"] == "alice"
    again = env["c"]["alice"].post(f"/api/items/{item['key']}/adjudicate",
                                   json={"decision": "accept", "version": flagged["version"]})
    assert again.status_code == 409


def test_stats_and_status(env):
    s = env["c"]["bob"].get("/api/stats").json()
    assert s["me"]["name"] == "bob" and s["me"]["decisions"] >= 2
    assert s["overall"]["items"] == 42 and set(s["overall"]) == {"items", "open", "leased"}  # no admin: blind
    s = env["c"]["alice"].get("/api/stats").json()
    assert s["overall"]["items"] == 42 and s["overall"]["done"] >= 5
    status = env["cli"]("review", "status")
    assert status["queue"]["items"] == 42 and status["queue"]["done"] >= 5
    assert status["throughput"]["bob"]["decisions"] >= 2
    assert status["coverage"]["by_source"]["demo"]["reviewed"] >= 5
    assert status["coverage"]["by_source"]["demo"]["catalog_records"] == 42
    assert set(status["coverage"]["by_defect_type"]) >= {"normal", "scratch"}
    assert status["pending_writes"] == 0 and status["events"]["edit"] >= 1
