"""The catalog at 200k records: every statement the CLI runs per record, and every filter it pages
by, is an index lookup or an index range (query plans, not wall-clock), and the bulk paths work.

Records are generated directly as rows (no images), so the test takes seconds.
"""

import json
import time

import pytest

from imdd_build.catalog import Catalog
from imdd_build.geometry import canvas_geometry
from imdd_build.record import Quarantined, Record

N = 200_000
SOURCES = ("mvtec", "visa", "ksdd2", "neu_det")


def _template() -> str:
    record = Record(key="mvtec/x", source="mvtec", domain="metal_part", product="screw", split="train",
                    source_split="train", label="normal", source_path="screw/train/good/x.png", sha256="0" * 64,
                    orig_width=512, orig_height=512, orig_mode="RGB",
                    geometry=canvas_geometry(512, 512, "letterbox", 512),
                    image="a" * 64 + ".png", image_format="png", license="CC-BY-NC-SA-4.0")
    return record.model_dump_json()


@pytest.fixture(scope="module")
def big_catalog(tmp_path_factory):
    ws = tmp_path_factory.mktemp("scale")
    template = json.loads(_template())
    catalog = Catalog(ws / "catalog.sqlite")
    rows = []
    now = time.time()
    for i in range(N):
        source = SOURCES[i % len(SOURCES)]
        split = "test" if i % 5 == 0 else "train"
        label = "defective" if i % 7 == 0 else "normal"
        status = None if i % 4 == 0 else "draft"
        key = f"{source}/item{i:07d}"
        data = dict(template, key=key, source=source, split=split, label=label, caption_status=status,
                    source_path=f"item{i:07d}.png", sha256=f"{i:064x}",
                    caption="x" if status else None, caption_source="template" if status else None)
        rows.append((key, source, split, label, status, f"fp{i}", json.dumps(data), now))
    with catalog.transaction():
        catalog.db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    catalog.db.execute("ANALYZE")
    yield catalog, ws
    catalog.close()


def _uses_index(plan: list[str]) -> bool:
    """Every step searches an index (or scans a covering one), no table scan, no sort per query."""
    return all(("USING INDEX" in step or "USING COVERING INDEX" in step or "USING INTEGER PRIMARY KEY" in step
                or "USING PRIMARY KEY" in step) and "TEMP B-TREE" not in step for step in plan) and bool(plan)


@pytest.mark.parametrize("filters", [{}, {"source": "visa"}, {"split": "test"}, {"uncaptioned": True},
                                     {"source": "visa", "uncaptioned": True}, {"source": "visa", "split": "test"}])
def test_record_pages_are_index_ranges(big_catalog, filters):
    catalog, _ = big_catalog
    sql, args = catalog.records_page_query(**filters)
    plan = catalog.query_plan(sql, args)
    assert _uses_index(plan) and all(s.startswith("SEARCH") for s in plan), plan


@pytest.mark.parametrize("sql,args", [
    ("SELECT fingerprint FROM records WHERE key = ?", ("visa/item0000001",)),          # resume skip check
    ("SELECT data FROM records WHERE key = ?", ("visa/item0000001",)),                 # get (shard, captions)
    ("UPDATE records SET data = ?, caption_status = ?, updated_at = ? WHERE key = ?", ("{}", "draft", 0, "k")),
    ("DELETE FROM quarantine WHERE source = ? AND path = ? AND stage = 'ingest'", ("visa", "a.png")),
    (("SELECT key, json_extract(data, '$.sha256'), json_extract(data, '$.caption_source') FROM records "
      "WHERE key IN (?, ?)"), ("a", "b")),                                              # upsert's keep check
])
def test_per_record_statements_are_key_lookups(big_catalog, sql, args):
    catalog, _ = big_catalog
    plan = catalog.query_plan(sql, args)
    assert all(s.startswith("SEARCH") for s in plan), plan


@pytest.mark.parametrize("sql,args", [
    ("SELECT COUNT(*) FROM records WHERE source = ?", ("visa",)),
    ("SELECT split, COUNT(*) FROM records WHERE source = ? GROUP BY split ORDER BY split", ("visa",)),
    ("SELECT label, COUNT(*) FROM records WHERE source = ? GROUP BY label ORDER BY label", ("visa",)),
    ("SELECT source, COUNT(*) FROM records GROUP BY source ORDER BY source", ()),
    ("SELECT split, COUNT(*) FROM records GROUP BY split ORDER BY split", ()),
    ("SELECT caption_status, COUNT(*) FROM records GROUP BY caption_status ORDER BY caption_status", ()),
    ("SELECT COUNT(*) FROM records WHERE caption_status IS NULL", ()),
])
def test_counts_read_indexes_only(big_catalog, sql, args):
    """`status`, `ingest`'s summary and `caption` counts: index-only (covering) reads, never the row data."""
    catalog, _ = big_catalog
    plan = catalog.query_plan(sql, args)
    assert any("COVERING INDEX" in s for s in plan) and not any(s.startswith("SCAN records") and "INDEX" not in s
                                                                for s in plan), plan


def test_counts_and_pages_are_right_at_scale(big_catalog):
    catalog, _ = big_catalog
    assert catalog.count() == N and catalog.count(source="visa") == N // 4
    assert sum(catalog.counts_by("split").values()) == N
    keys = [r.key for r in catalog.iter_records(source="mvtec", uncaptioned=True, batch=5000)]
    assert keys == sorted(keys) and all(k.startswith("mvtec/") for k in keys)
    assert len(keys) == N // 4  # mvtec is every 4th record, and so are the uncaptioned
    uncaptioned = sum(1 for _ in catalog.iter_records(uncaptioned=True, batch=5000))
    assert uncaptioned == N // 4


def test_status_command_on_200k(big_catalog, cli, tmp_path):
    from conftest import Cli

    _, ws = big_catalog
    status = Cli(ws)("status")
    assert status["records"] == N and status["by_source"] == {s: N // 4 for s in sorted(SOURCES)}


def test_bulk_upsert_and_key_claims_at_scale(big_catalog):
    catalog, _ = big_catalog
    paid = catalog.get("mvtec/item0000004").model_copy(update={
        "caption": "expert words", "caption_source": "expert", "caption_status": "verified"})
    catalog.set_captions([paid])
    fresh = [catalog.get(f"mvtec/item{i:07d}").model_copy(update={"caption": None, "caption_source": None,
                                                                   "caption_status": None})
             for i in range(0, 4000, 4)]
    catalog.quarantine([Quarantined(source="mvtec", path="item0000008.png", reason="old")])
    assert catalog.upsert((r, "fp-new") for r in fresh) == len(fresh)
    assert catalog.get("mvtec/item0000004").caption == "expert words"  # paid-for work survives re-ingest
    assert catalog.get("mvtec/item0000008").caption is None and catalog.fingerprint("mvtec/item0000008") == "fp-new"
    assert catalog.quarantined(source="mvtec") == []  # a re-ingested file leaves the quarantine
    catalog.begin_key_claims()
    assert catalog.claim_key("mvtec/a", "a.png") is None
    assert catalog.claim_key("mvtec/a", "a.jpg") == "a.png"
    catalog.begin_key_claims()  # a new run starts empty
    assert catalog.claim_key("mvtec/a", "a.jpg") is None
