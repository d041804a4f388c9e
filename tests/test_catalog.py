"""The catalog package: schema migrations checked at open, the transaction helper, the one caption write path."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from imdd_build.catalog import SCHEMA_VERSION, Catalog, SchemaError, transaction
from imdd_build.cli import app
from imdd_build.catalog.schema import _V1_RECORDS, REVIEW_STATES
from imdd_build.geometry import canvas_geometry
from imdd_build.record import Record


def _record(key: str) -> Record:
    return Record(key=key, source="demo", domain="metal_part", product="screw", split="train", source_split="train",
                  label="normal", source_path=f"{key}.png", sha256="0" * 64, orig_width=512, orig_height=512,
                  orig_mode="RGB", geometry=canvas_geometry(512, 512, "letterbox", 512), image="a" * 64 + ".png",
                  image_format="png", license="CC-BY-NC-SA-4.0")


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_catalog_has_every_table_at_the_current_version(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as catalog:
        assert catalog.db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == \
            (str(SCHEMA_VERSION),)
        assert {"records", "quarantine", "runs", "image_hashes", "dedupe_groups", "llm_answers", "llm_batches",
                "llm_batch_items", "review_queue", "review_events", "review_outbox", "review_counts"} <= \
            _tables(catalog.db)
        assert dict(catalog.db.execute("SELECT state, n FROM review_counts")) == {s: 0 for s in REVIEW_STATES}


def test_a_version_1_file_is_migrated_at_open_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_V1_RECORDS)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    record = _record("a")
    db.execute("INSERT INTO records VALUES (?, ?, ?, ?, NULL, 'fp', ?, 0)",
               (record.key, record.source, record.split, record.label, record.model_dump_json()))
    # a review queue as an older imdd-build created it: no lease_token column, no state counts
    db.executescript("""CREATE TABLE review_queue (key TEXT PRIMARY KEY, source TEXT NOT NULL, stratum TEXT NOT NULL,
        tier INTEGER NOT NULL, rank INTEGER NOT NULL, required INTEGER NOT NULL DEFAULT 1, gold TEXT,
        state TEXT NOT NULL DEFAULT 'open', decisions INTEGER NOT NULL DEFAULT 0, outcome TEXT,
        lease_reviewer INTEGER, lease_until REAL, leased_at REAL, version INTEGER NOT NULL DEFAULT 1,
        enqueued_at REAL NOT NULL, updated_at REAL NOT NULL);
        INSERT INTO review_queue (key, source, stratum, tier, rank, state, enqueued_at, updated_at)
        VALUES ('a', 'demo', 's', 1, 1, 'open', 0, 0), ('b', 'demo', 's', 1, 2, 'done', 0, 0);""")
    db.commit()
    db.close()
    with Catalog(path) as catalog:
        assert catalog.db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == \
            (str(SCHEMA_VERSION),)
        assert catalog.get("a") == record
        tokens = [t for (t,) in catalog.db.execute("SELECT lease_token FROM review_queue")]
        assert len(tokens) == 2 and all(tokens) and len(set(tokens)) == 2
        assert dict(catalog.db.execute("SELECT state, n FROM review_counts")) == \
            {"open": 1, "done": 1, "disputed": 0, "flagged": 0}
        catalog.db.execute("UPDATE review_queue SET state = 'done' WHERE key = 'a'")  # the triggers keep counting
        assert catalog.db.execute("SELECT n FROM review_counts WHERE state = 'done'").fetchone() == (2,)


def test_a_newer_file_is_refused_with_one_line_naming_it(tmp_path, cli, workspace):
    path = tmp_path / "new.sqlite"
    Catalog(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match=f"{path}: catalog schema version {SCHEMA_VERSION + 1} is newer"):
        Catalog(path)
    # the CLI says it in one line and exits 2, instead of writing tables it does not know
    Catalog(workspace / "catalog.sqlite").close()
    db = sqlite3.connect(workspace / "catalog.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    result = cli.runner.invoke(app, ["--workspace", str(workspace), "stats", "--json"])
    assert result.exit_code == 2
    assert "catalog schema version 99 is newer" in result.output
    assert "Traceback" not in result.output


def test_concurrent_first_opens_migrate_once(tmp_path):
    path = tmp_path / "c.sqlite"
    code = f"from imdd_build.catalog import Catalog; Catalog({str(path)!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with Catalog(path) as catalog:
        assert catalog.db.execute("SELECT COUNT(*) FROM meta").fetchone() == (1,)
        assert dict(catalog.db.execute("SELECT state, n FROM review_counts")) == {s: 0 for s in REVIEW_STATES}


def test_transaction_commits_rolls_back_and_nests(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as catalog:
        with pytest.raises(RuntimeError):
            with transaction(catalog.db):
                catalog.db.execute("INSERT INTO runs (command, options, started_at) VALUES ('x', '{}', 0)")
                raise RuntimeError("boom")
        assert catalog.db.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
        with catalog.transaction():
            catalog.db.execute("INSERT INTO runs (command, options, started_at) VALUES ('outer', '{}', 0)")
            with transaction(catalog.db):  # joins the outer transaction: no nested BEGIN
                catalog.db.execute("INSERT INTO runs (command, options, started_at) VALUES ('inner', '{}', 0)")
            assert catalog.db.in_transaction
        assert not catalog.db.in_transaction
        assert [c for (c,) in catalog.db.execute("SELECT command FROM runs ORDER BY id")] == ["outer", "inner"]


def test_write_captions_reads_the_record_as_it_is_now(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as catalog:
        catalog.upsert([(_record("a"), "fa"), (_record("b"), "fb"), (_record("c"), "fc")])
        catalog.set_captions([catalog.get("b").model_copy(update={"caption": "Expert.", "caption_source": "expert",
                                                                  "caption_status": "verified"})])
        n = catalog.write_captions({
            "a": {"caption": "Draft.", "caption_source": "template", "caption_status": "draft"},
            "b": {"caption": "Overwrite?", "caption_source": "llm", "caption_status": "draft"},  # protected
            "c": {"caption": "Only if unchanged.", "_expect_caption": "something else"},
            "missing": {"caption": "No record."},
        })
        assert n == 1
        assert catalog.get("a").caption == "Draft." and catalog.get("a").caption_status == "draft"
        assert catalog.get("b").caption == "Expert." and catalog.get("c").caption is None
        assert catalog.count(caption_status="draft") == 1  # the indexed column follows the record
        assert catalog.write_captions({"b": {"caption": "Edited."}}, allow_protected=True) == 1
        assert catalog.get("b").caption == "Edited." and catalog.get("b").caption_source == "expert"
        assert catalog.fingerprint("a") == "fa"  # fingerprints are kept
        with pytest.raises(ValueError, match="'a': label are not caption fields"):
            catalog.write_captions({"a": {"label": "good"}})


def test_template_captioning_keeps_an_expert_edit_that_lands_while_it_runs(tmp_path):
    from imdd_build.caption import caption_workspace

    path = tmp_path / "c.sqlite"
    with Catalog(path) as catalog:
        catalog.upsert([(_record(k), "f") for k in ("a", "b", "c")])

        def expert_edits_c(record: Record) -> None:  # "c" was already read, uncaptioned, by the run's page
            if record.key == "a":
                with Catalog(path) as other:
                    other.write_captions({"c": {"caption": "Expert.", "caption_source": "expert",
                                                "caption_status": "verified"}})

        summary = caption_workspace(catalog, on_record=expert_edits_c)
        assert summary["captioned"] == 3
        assert catalog.get("a").caption_source == "template" and catalog.get("b").caption_source == "template"
        assert catalog.get("c").caption == "Expert." and catalog.get("c").caption_status == "verified"


def test_a_version_2_file_gets_the_split_moves_table_and_its_records_read_as_before(tmp_path):
    path = tmp_path / "v2.sqlite"
    with Catalog(path) as catalog:
        catalog.upsert([(_record("a"), "fp")])
        catalog.db.execute("DROP TABLE split_moves")
        catalog.db.execute("UPDATE meta SET value = '2' WHERE name = 'schema_version'")
    with Catalog(path) as catalog:
        assert catalog.db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("3",)
        assert catalog.dedupe.split_moves() == {}
        record = catalog.get("a")
        assert record.split_origin == "official" and record.sample_split is None
        # the one way a split changes after ingest: set it, then put it back to the record's own draw
        assert catalog.set_splits({"a": ("test", "seeded-group", "train"), "missing": ("test", "seeded-group",
                                                                                      "train")}) == 1
        assert catalog.set_splits({"a": ("test", "seeded-group", "train")}) == 0  # already so: not rewritten
        assert catalog.get("a").split == "test" and catalog.count(split="test") == 1
        assert catalog.restore_sample_splits(["a"]) == 1
        back = catalog.get("a")
        assert (back.split, back.split_origin, back.sample_split) == ("train", "seeded", None)
        assert catalog.fingerprint("a") == "fp"
