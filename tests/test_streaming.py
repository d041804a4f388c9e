"""dedupe and stats read the catalog as a stream of a few fields (`Catalog.iter_fields`), never as records."""

import pytest

from imdd_build.dedupe import find_duplicates
from imdd_build.record import Record
from imdd_build.sources.demo import generate_demo
from imdd_build.stats import collect_stats, stats_rows
from imdd_build.workspace import Workspace


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    from conftest import Cli

    base = tmp_path_factory.mktemp("streaming")
    cli = Cli(base / "ws")
    cli("ingest", "demo", "--root", str(generate_demo(base / "demo")), "--workers", "1")
    cli("caption")
    return Workspace(base / "ws")


def test_iter_fields_pages_filters_and_rejects_bad_names(demo_ws):
    with demo_ws.catalog() as catalog:
        records = list(catalog.iter_records())
        rows = list(catalog.iter_fields(("key", "split", "image", "attributes.area_fraction", "defect_types"),
                                        batch=5))  # pages of 5: every boundary crossed
        assert [r[0] for r in rows] == [r.key for r in records]
        assert rows[7][1:4] == (records[7].split, records[7].image, records[7].attributes.area_fraction)
        assert all(r[4].startswith("[") for r in rows)  # lists come back as JSON text
        assert list(catalog.iter_fields(("key",), sources=("nosuch",))) == []
        assert len(list(catalog.iter_fields(("key",), sources=("demo", "nosuch"), batch=4))) == len(records)
        with pytest.raises(ValueError, match="invalid record field"):
            next(catalog.iter_fields(("key) FROM records; --",)))


def test_dedupe_and_stats_parse_no_record(demo_ws, monkeypatch):
    with demo_ws.catalog() as catalog:
        expected = collect_stats(stats_rows(catalog))

        def refuse(*args, **kwargs):
            raise AssertionError("a full record was parsed")
        monkeypatch.setattr(Record, "model_validate_json", refuse)
        result = find_duplicates(catalog, demo_ws.store(), workers=1)
        assert result.images == 42 and result.groups == []
        assert collect_stats(stats_rows(catalog)) == expected and expected["images"] == 42
        with pytest.raises(AssertionError):
            next(catalog.iter_records())  # the guard does bite
