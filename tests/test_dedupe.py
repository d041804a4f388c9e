"""Exact/near duplicate groups and train/test leakage on a catalog with planted duplicates."""

import pytest

from conftest import Cli
from publish_fixtures import EXPECTED_DROPPED, build_workspace


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("dedupe")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMDD_SOURCES", str(base / "sources.yaml"))
        ws, sources = build_workspace(base, Cli)
        yield Cli(ws), sources


def _by_keys(result):
    return {frozenset(m["key"] for m in g["members"]): g for g in result["groups"]}


def test_dedupe_reports_planted_groups_and_leakage(built, monkeypatch):
    cli, sources = built
    monkeypatch.setenv("IMDD_SOURCES", str(sources))
    out = cli("dedupe")  # default radius 6
    groups = _by_keys(out)
    exact = groups[frozenset({"demo/ceramic_tile/test/good/000", "twin/ceramic_tile/train/good/000"})]
    assert exact["kind"] == "exact" and exact["leakage"] and exact["dropped"] == ["twin/ceramic_tile/train/good/000"]
    assert exact["sources"] == ["demo", "twin"]
    jpeg = groups[frozenset({"demo/metal_plate/test/hole/000", "twin/metal_plate/train/good/001"})]
    assert jpeg["kind"] == "near" and jpeg["leakage"] and jpeg["dropped"] == ["twin/metal_plate/train/good/001"]
    shift = groups[frozenset({"demo/ceramic_tile/test/stain/000", "twin/ceramic_tile/test/good/002"})]
    assert shift["kind"] == "near" and not shift["leakage"] and shift["dropped"] == []
    reverse = groups[frozenset({"demo/ceramic_tile/train/good/003", "twin/ceramic_tile/test/good/003"})]
    assert reverse["dropped"] == ["demo/ceramic_tile/train/good/003"]  # the test copy is kept, whatever source
    assert len(out["groups"]) == 4 and out["group_count"] == 4 and out["leakage_groups"] == 3
    assert set(out["dropped"]) == EXPECTED_DROPPED and out["images"] == 47
    assert not any("010" in k for g in out["groups"] for k in (m["key"] for m in g["members"]))


def test_radius_zero_keeps_only_exact_and_keep_policy_drops_nothing(built, monkeypatch):
    cli, sources = built
    monkeypatch.setenv("IMDD_SOURCES", str(sources))
    out = cli("dedupe", "--radius", "0", "--leakage", "keep")
    assert out["dropped"] == [] and out["leakage_policy"] == "keep"
    kinds = {g["kind"] for g in out["groups"]}
    assert "exact" in kinds and out["exact_groups"] == 2
    # second run: hashes come from the catalog cache, same answer
    assert cli("dedupe", "--radius", "0", "--leakage", "keep")["groups"] == out["groups"]
    cli("dedupe", "--radius", "64", expect=2)
