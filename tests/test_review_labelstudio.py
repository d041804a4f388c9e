"""Label Studio export -> annotate (as Label Studio's JSON export writes it) -> import round trip."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET

from conftest import Cli
from review_fixtures import review_workspace

from imdd_build.caption.template import TEMPLATE_VERSION
from imdd_build.catalog import Catalog


def test_label_studio_round_trip(tmp_path):
    ws = review_workspace(tmp_path)
    cli = Cli(ws)
    cli("review", "enqueue", "--sample-rate", "0", "--double-rate", "0")
    out = tmp_path / "ls" / "tasks.json"
    summary = cli("review", "export", "--format", "label-studio", "--out", str(out), "--limit", "5")
    assert summary["tasks"] == 5
    tasks = json.loads(out.read_text())
    assert len(tasks) == 5
    config = ET.fromstring((tmp_path / "ls" / "tasks.label_config.xml").read_text())
    assert config.find("TextArea").get("name") == "caption" and config.find("Image").get("value") == "$image"
    with Catalog(ws / "catalog.sqlite") as catalog:
        for task in tasks:
            rec = catalog.get(task["data"]["key"])
            assert task["data"]["draft"] == rec.caption
            assert task["data"]["image"] == f"/data/local-files/?d=store/{rec.image[:2]}/{rec.image}"
            assert (ws / "store" / rec.image[:2] / rec.image).exists()
            (pred,) = task["predictions"]
            assert pred["model_version"] == (f"template-v{TEMPLATE_VERSION}" if rec.caption_meta else "template")
            (res,) = pred["result"]
            assert (res["from_name"], res["to_name"], res["type"]) == ("caption", "image", "textarea")
            assert res["value"]["text"] == [rec.caption]
    # what Label Studio's "JSON" export gives back after three people worked on the tasks
    t0, t1, t2, t3, t4 = tasks
    edited = "A rewritten caption that an inspector typed into Label Studio for this image."

    def ann(aid, who, result, lead, cancelled=False):
        return {"id": aid, "completed_by": who, "result": result, "lead_time": lead, "was_cancelled": cancelled,
                "created_at": "2026-01-02T03:04:05.000000Z", "updated_at": "2026-01-02T03:04:06.000000Z"}

    def text(value):
        return {"from_name": "caption", "to_name": "image", "type": "textarea", "value": {"text": [value]}}

    def choice(name, value):
        return {"from_name": name, "to_name": "image", "type": "choices", "value": {"choices": [value]}}

    t0["annotations"] = [ann(1, {"id": 7, "email": "ann@example.com"}, [text(t0["data"]["draft"]),
                                                                        choice("decision", "accept")], 12.5)]
    t1["annotations"] = [ann(2, 3, [text(edited)], 40.25)]
    t2["annotations"] = [ann(3, {"email": "ann@example.com"}, [text(t2["data"]["draft"]), choice("decision", "reject"),
                                                               choice("reason", "wrong_mask")], 8)]
    t3["annotations"] = [ann(4, 3, [], 2, cancelled=True)]
    t4["id"] = 99
    ls_export = tmp_path / "ls" / "export.json"
    ls_export.write_text(json.dumps(tasks))
    result = cli("review", "import", "--format", "label-studio", str(ls_export))
    assert result["imported"] == 3 and result["cancelled"] == 1 and not result["unknown_keys"]
    assert result["reviewers"] == ["label-studio:3", "label-studio:ann@example.com"]
    with Catalog(ws / "catalog.sqlite") as catalog:
        r0, r1, r2, r3 = (catalog.get(t["data"]["key"]) for t in (t0, t1, t2, t3))
        assert r0.caption_status == "verified" and r0.caption == t0["data"]["draft"]
        assert r1.caption == edited and r1.caption_source == "expert" and r1.caption_status == "verified"
        assert r1.caption_meta["review"]["reviewers"] == ["label-studio:3"]
        assert r2.caption_status == "rejected" and r2.caption_meta["review"]["reason"] == "wrong_mask"
        assert r3.caption_status == "draft"
    db = sqlite3.connect(ws / "catalog.sqlite")
    try:
        rows = db.execute("SELECT key, reviewer, action, data, at FROM review_events ORDER BY id").fetchall()
        origin = db.execute("SELECT origin, active, token_hash FROM review_reviewers "
                            "WHERE name = 'label-studio:3'").fetchone()
    finally:
        db.close()
    assert origin == ("label-studio", 0, None)  # imported reviewers cannot log in
    by_key = {k: (who, action, json.loads(data), at) for k, who, action, data, at in rows}
    who, action, data, at = by_key[t1["data"]["key"]]
    assert (who, action) == ("label-studio:3", "edit") and data["time_spent"] == 40.25
    assert data["imported"]["lead_time"] == 40.25 and data["imported"]["annotation_id"] == 2
    assert at == 1767323045.0  # 2026-01-02T03:04:05Z
    assert by_key[t2["data"]["key"]][1] == "reject"
    # importing the same file again changes nothing
    again = cli("review", "import", "--format", "label-studio", str(ls_export))
    assert again["imported"] == 0 and again["not_open"] + again["already_decided"] == 3
    # open items only by default: the three decided ones are no longer exported
    assert cli("review", "export", "--out", str(tmp_path / "ls" / "rest.json"))["tasks"] == 39
    cli("review", "export", "--format", "cvat", "--out", str(tmp_path / "x.json"), expect=2)
    cli("review", "import", str(tmp_path / "missing.json"), expect=2)
