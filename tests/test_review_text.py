"""Text that must not reach a verified caption: control and invisible characters are refused by the review
API with the caption checks' own rule, and `review import` skips and reports malformed tasks."""

from __future__ import annotations

import json

import pytest
from conftest import Cli
from review_fixtures import ReviewServer, add_reviewer, review_workspace

from imdd_build.caption.checks import check_caption, disallowed_characters
from imdd_build.catalog import Catalog
from imdd_build.geometry import canvas_geometry
from imdd_build.record import Record

pytest.importorskip("fastapi")

GOOD = ("An industrial inspection image of a metal plate showing a scratch defect in the upper left area. It is a "
        "single thin and elongated mark covering well under one percent of the visible surface, a minor defect.")
HIDDEN = {"NUL": "\x00", "BEL": "\x07", "ANSI": "\x1b[31m", "RLO": "\u202e", "ZWSP": "\u200b", "DEL": "\x7f",
          "C1": "\x9b", "BOM": "\ufeff"}


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_the_shared_rule_and_the_caption_checks_catch_every_hidden_character(name):
    record = Record(key="demo/x/test/scratch/000", source="demo", domain="metal_surface", product="metal_plate",
                    split="test", source_split="test", label="defective", defect_types=["scratch"],
                    source_path="x.png", sha256="0" * 64, orig_width=100, orig_height=100, orig_mode="L",
                    geometry=canvas_geometry(100, 100), image="a.png", image_format="png", license="CC0-1.0")
    text = GOOD.replace("scratch", "scr" + HIDDEN[name] + "atch")
    assert disallowed_characters(text)
    result = check_caption(record, text)
    assert not result.results["no_markup"] and "control or invisible" in " ".join(result.reasons)
    assert disallowed_characters(GOOD) == [] and disallowed_characters("tab\tand\nnewline") == []


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ws = review_workspace(tmp_path_factory.mktemp("review-text"))
    Cli(ws)("review", "enqueue", "--sample-rate", "0", "--double-rate", "0")
    token = add_reviewer(ws, "bob")
    with ReviewServer(ws) as server:
        with server.client(token) as c:
            yield {"ws": ws, "c": c}


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_an_edit_with_hidden_characters_is_refused_and_the_draft_stays(env, name):
    c = env["c"]
    item = c.post("/api/next").json()
    caption = GOOD.replace("scratch", "scr" + HIDDEN[name] + "atch")
    r = c.post(f"/api/items/{item['key']}/review", json={"decision": "edit", "caption": caption,
                                                         "version": item["version"]})
    assert r.status_code == 422 and "control or invisible" in r.json()["detail"]
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        assert catalog.get(item["key"]).caption_status == "draft"
    flag = c.post(f"/api/items/{item['key']}/review", json={"decision": "flag", "reason": "odd" + HIDDEN[name],
                                                            "version": item["version"]})
    assert flag.status_code == 422


def test_a_draft_with_hidden_characters_cannot_be_accepted_as_is(env):
    c = env["c"]
    item = c.post("/api/next").json()
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        rec = catalog.get(item["key"])
        catalog.set_captions([rec.model_copy(update={"caption": rec.caption + "\x00\x1b[0m"})])
    r = c.post(f"/api/items/{item['key']}/review", json={"decision": "accept", "version": item["version"]})
    assert r.status_code == 422 and "draft" in r.json()["detail"]
    fixed = c.post(f"/api/items/{item['key']}/review", json={"decision": "edit", "caption": GOOD,
                                                             "version": item["version"]})
    assert fixed.status_code == 200
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        assert catalog.get(item["key"]).caption == GOOD


def test_import_skips_and_reports_malformed_tasks(tmp_path):
    ws = review_workspace(tmp_path)
    cli = Cli(ws)
    cli("review", "enqueue", "--sample-rate", "0", "--double-rate", "0")
    export = tmp_path / "tasks.json"
    cli("review", "export", "--out", str(export), "--limit", "4")
    tasks = json.loads(export.read_text())
    keys = [t["data"]["key"] for t in tasks]

    def annotation(text, **extra):
        return {"id": 1, "completed_by": {"email": "ann@example.com"}, "lead_time": 3.5,
                "result": [{"from_name": "caption", "to_name": "image", "type": "textarea",
                            "value": {"text": [text]}}], **extra}

    tasks[0]["annotations"] = [annotation("A lone \ud800 surrogate in the text.")]
    tasks[1]["annotations"] = [annotation(GOOD, lead_time=2 ** 2000)]  # float() overflows
    tasks[2]["annotations"] = [annotation("Bell \x07 inside.")]
    tasks[3]["annotations"] = [annotation(GOOD)]
    tasks.insert(0, "not a task")
    tasks.insert(1, {"id": 99, "data": {"key": keys[0]}, "annotations": "nope"})
    export.write_text(json.dumps(tasks))  # ensure_ascii: the surrogate is a \ud800 escape, as Label Studio writes it
    out = cli("review", "import", str(export))
    assert out["imported"] == 1 and out["tasks"] == 6
    assert len(out["invalid"]) == 5, out["invalid"]
    reasons = " ".join(i["reason"] for i in out["invalid"])
    assert "control or invisible" in reasons and "ud800" not in reasons.lower()
    with Catalog(ws / "catalog.sqlite") as catalog:
        assert catalog.get(keys[3]).caption == GOOD and catalog.get(keys[3]).caption_status == "verified"
        assert catalog.get(keys[0]).caption_status == "draft"
