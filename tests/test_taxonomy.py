"""The taxonomy: label resolution, `taxonomy check`, and the registry's README table / roots checks."""

from pathlib import Path

import yaml

from fixtures import write_mvtec
from imdd_build.registry import load_registry, markdown_table
from imdd_build.sources import ADAPTERS
from imdd_build.sourcekit.base import seeded_split
from imdd_build.taxcheck import check_taxonomy
from imdd_build.taxonomy import Taxonomy, load_taxonomy, norm_label

REPO = Path(__file__).resolve().parents[1]


def test_resolution_order_source_table_then_synonyms():
    tax = load_taxonomy()
    r = tax.resolve("mvtec", "scratch_head")
    assert (r.type, r.part) == ("scratch", "head")
    assert tax.resolve("mvtec", "good").normal and tax.resolve("mvtec", "good").mapped
    # not in the source's table: canonical ids, names and synonyms, case and separators ignored
    assert tax.resolve("someline", "Scratches").type == "scratch"
    assert tax.resolve("someline", "Edge-Loc").type == "edge_localized_cluster"
    assert tax.resolve("someline", "rolled-in scale").type == "rolled_in_scale"
    unknown = tax.resolve("someline", "wobbly gizmo")
    assert not unknown.mapped and unknown.type is None
    # a user label map wins over everything
    assert tax.resolve("someline", "wobbly gizmo", {"Wobbly Gizmo": "deformation"}).type == "deformation"
    assert norm_label(" Edge-Loc ") == "edge_loc"


def test_check_lists_unmapped_labels_and_bad_targets():
    tax = Taxonomy(domains={"metal": {"name": "metal"}},
                   defect_types={"scratch": {"name": "scratch", "definition": "a mark"},
                                 "dent": {"name": "dent", "definition": ""}},
                   sources={"x": {"scratched": "scratch", "blob": "nonexistent", "ok": "normal"}})
    out = check_taxonomy(tax, {}, {})
    assert [u["label"] for u in out["unmapped"]] == ["blob"]
    assert any("'nonexistent' is not a defect type" in p for p in out["problems"])
    assert any("dent: no definition" in p for p in out["problems"])


def test_builtin_sources_have_no_unmapped_labels(cli, tmp_path):
    out = cli("taxonomy", "check")
    assert out["unmapped"] == [] and out["problems"] == []
    assert out["domains"] >= 40 and out["defect_types"] >= 60
    registry = load_registry()
    tax = load_taxonomy()
    for sid, entry in registry.items():
        assert sid in tax.sources, f"{sid} has no label table"
        assert entry.adapter_id in ADAPTERS
    # labels found in an ingested catalog are checked too
    write_mvtec(tmp_path / "m")
    cli("ingest", "mvtec", "--root", str(tmp_path / "m"), "--workers", "1")
    out = cli("taxonomy", "check")
    assert out["unmapped"] == [] and out["catalog_by_defect_type"] == {"break": 2, "scratch": 1}


def test_taxonomy_check_fails_on_an_unmapped_catalog_label(cli, tmp_path, monkeypatch):
    bad = tmp_path / "taxonomy.yaml"
    data = yaml.safe_load((REPO / "annotation_guidelines" / "taxonomy.yaml").read_text())
    del data["sources"]["mvtec"]["scratch_head"]
    data["defect_types"].pop("scratch")  # so no synonym rescues it either
    for entry in data["defect_types"].values():
        entry["synonyms"] = [s for s in entry.get("synonyms", []) if "scratch" not in str(s)]
    for table in data["sources"].values():
        for k in [k for k, v in table.items() if v == "scratch" or (isinstance(v, dict) and v.get("type") == "scratch")]:
            del table[k]
    bad.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("IMDD_TAXONOMY", str(bad))
    write_mvtec(tmp_path / "m")
    cli("ingest", "mvtec", "--root", str(tmp_path / "m"), "--workers", "1")
    out = cli("taxonomy", "check", expect=1)
    assert {"source": "mvtec", "label": "scratch_head", "where": "catalog"} in out["unmapped"]


def test_readme_table_is_generated_from_sources_yaml():
    table = markdown_table(load_registry())
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- sources-table:start -->\n", "<!-- sources-table:end -->"
    assert start in readme and end in readme, "README lacks the generated sources table markers"
    assert readme.split(start, 1)[1].split(end, 1)[0] == table, \
        "README sources table is stale: run `imdd-build sources --markdown` and paste it between the markers"


def test_seeded_split_is_stable_and_roughly_proportional():
    splits = [seeded_split("ksdd", f"kos{i:02d}") for i in range(2000)]
    assert splits == [seeded_split("ksdd", f"kos{i:02d}") for i in range(2000)]
    share = {s: splits.count(s) / len(splits) for s in set(splits)}
    assert abs(share["train"] - 0.7) < 0.05 and abs(share["test"] - 0.2) < 0.05
    assert seeded_split("a", "g", {"train": 1.0}) == "train"


def test_sources_roots_reports_missing_and_incomplete(cli, tmp_path):
    from imdd_build.sources.demo import generate_demo

    write_mvtec(tmp_path / "m")
    generate_demo(tmp_path / "demo")
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"mvtec": "m", "demo": str(tmp_path / "demo"), "visa": "not/here"}))
    out = cli("sources", "--roots", str(roots))
    checks = out["roots"]
    assert checks["demo"]["status"] == "complete" and checks["demo"]["found"]["total"] == 42
    assert checks["mvtec"]["status"] == "incomplete"
    # listing does not decode: the 3 files ingest would quarantine are counted as present
    assert {"count": "total", "published": 5354, "found": 12} in checks["mvtec"]["differences"]
    assert checks["visa"]["status"] == "missing" and out["missing"] == ["visa"]
    assert out["incomplete"] == ["mvtec"]


def test_ingest_all_from_roots_file(cli, tmp_path):
    from imdd_build.sources.demo import generate_demo

    write_mvtec(tmp_path / "m")
    generate_demo(tmp_path / "demo")
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"mvtec": "m", "demo": "demo"}))
    out = cli("ingest", "all", "--roots", str(roots), "--workers", "1")
    assert out["sources"]["mvtec"]["records"] == 9 and out["sources"]["demo"]["records"] == 42
    assert out["records"] == 51 and out["failed"] == {}
    roots.write_text(yaml.safe_dump({"demo": "demo", "visa": "nowhere"}))
    out = cli("ingest", "all", "--roots", str(roots), "--workers", "1", expect=1)
    assert "visa" in out["failed"] and out["sources"]["demo"]["records"] == 42
