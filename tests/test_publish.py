"""push-to-hub --dry-run: the repo folder loads with `datasets` per config (also streaming), the card
parses with huggingface_hub and matches the data, the license policy refuses what it must."""

import json
import re

import datasets
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml
from huggingface_hub import DatasetCard

from conftest import Cli
from imdd_build.card import features_yaml
from imdd_build.writers.rows import FEATURES
from publish_fixtures import EXPECTED_DROPPED, build_workspace, write_sources

EXPECTED = {"default": {"train": 18, "test": 26}, "demo": {"train": 17, "test": 24}, "twin": {"train": 1, "test": 2}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("publish")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMDD_SOURCES", str(base / "sources.yaml"))
        mp.delenv("HF_TOKEN", raising=False)
        ws, sources = build_workspace(base, Cli)
        repo = base / "repo"
        summary = Cli(ws)("push-to-hub", "me/imdd-test", "--dry-run", str(repo), "--with-webdataset",
                          "--max-shard-size", "3MB")
        yield Cli(ws), base, repo, summary


def test_dry_run_loads_per_config_with_expected_counts(built):
    _, _, repo, summary = built
    assert summary["dry_run"] and summary["configs"] == EXPECTED
    assert set(summary["dropped_for_leakage"]) == EXPECTED_DROPPED
    for config, splits in EXPECTED.items():
        ds = datasets.load_dataset(str(repo), config)
        assert {s: ds[s].num_rows for s in ds} == splits, config
        assert not EXPECTED_DROPPED & set(ds["train"]["key"])
        streamed = datasets.load_dataset(str(repo), config, streaming=True)
        assert {s: sum(1 for _ in streamed[s]) for s in streamed} == splits, config
        if config != "default":
            assert set(ds["test"]["source"]) == {config}
    row = datasets.load_dataset(str(repo), "twin", split="test")[0]
    assert row["image"].size == (512, 512) and row["caption"] and row["license"] == "CC-BY-4.0"


def test_layout_file_names_and_size_limits(built):
    _, _, repo, summary = built
    parquet = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.parquet"))
    assert all(re.fullmatch(r"data/(demo|twin)/(train|test)-\d{5}-of-\d{5}\.parquet", p) for p in parquet)
    assert len([p for p in parquet if p.startswith("data/demo/test-")]) > 1  # 3MB cap split the split
    for p in repo.rglob("*.parquet"):
        meta = pq.ParquetFile(p).metadata
        assert p.stat().st_size < 500_000_000
        assert all(meta.row_group(i).total_byte_size < 100_000_000 for i in range(meta.num_row_groups))
    tars = sorted(repo.glob("webdataset/*/*.tar"))
    assert {t.parent.name for t in tars} == {"demo", "twin"}
    n = sum(1 for _ in wds.WebDataset([str(t) for t in tars], shardshuffle=False, empty_check=False))
    assert n == 18 + 26
    assert {p.name for p in (repo / "assets").iterdir()} >= {"images_per_source.png", "images_per_domain.png",
                                                               "defect_types.png", "label_balance.png",
                                                               "caption_length.png", "mask_area.png",
                                                               "verification.png", "samples_textile.png"}


def test_card_parses_and_matches_the_data(built):
    _, _, repo, _ = built
    card = DatasetCard.load(repo / "README.md")
    data = card.data.to_dict()
    assert data["pretty_name"] and data["license"][0] == "other" and "cc-by-4.0" in data["license"]
    assert set(data["task_categories"]) == {"image-segmentation", "object-detection", "image-classification",
                                            "image-to-text", "text-to-image"}
    assert data["size_categories"] == ["n<1K"] and "industrial" in data["tags"]
    assert "extra_gated_prompt" not in data  # CC0 + CC-BY sources: no gating
    configs = {c["config_name"]: {f["split"]: f["path"] for f in c["data_files"]} for c in data["configs"]}
    assert configs["default"] == {"train": "data/*/train-*.parquet", "test": "data/*/test-*.parquet"}
    assert configs["twin"]["test"] == "data/twin/test-*.parquet"
    for info in data["dataset_info"]:
        sizes = {s["name"]: s["num_examples"] for s in info["splits"]}
        assert sizes == EXPECTED[info["config_name"]]
        builder = datasets.load_dataset_builder(str(repo), info["config_name"])
        assert {s: v.num_examples for s, v in builder.info.splits.items()} == sizes
    # the YAML features are what `datasets` itself writes for our features
    assert features_yaml() == datasets.Features.from_dict(FEATURES)._to_yaml_list()
    body = card.text
    for needle in ("Sources and licenses", "| `twin` |", "@misc{twin2025", "Images per defect type",
                   "Captions: provenance and verification", "Duplicates and split leakage",
                   "twin/metal_plate/train/good/001", "How to load", "streaming=True", "import webdataset",
                   "Known limitations", "assets/samples_ceramic_tile.png"):
        assert needle in body, needle
    for ref in re.findall(r"\]\((assets/[^)]+)\)", body):
        assert (repo / ref).is_file()
    dedupe = json.loads((repo / "metadata" / "dedupe.json").read_text())
    assert dedupe["leakage_groups"] == 3 and set(dedupe["dropped"]) == EXPECTED_DROPPED


def _policy_cli(built, tmp_path, monkeypatch, **twin):
    cli, _, _, _ = built
    monkeypatch.setenv("IMDD_SOURCES", str(write_sources(tmp_path / "sources.yaml", **twin)))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cli


@pytest.mark.parametrize("redistribution", ["forbidden", "unknown"])
def test_public_push_refuses_forbidden_and_unknown(built, tmp_path, monkeypatch, redistribution):
    cli = _policy_cli(built, tmp_path, monkeypatch, redistribution=redistribution)
    out = cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "r"), expect=2)
    assert "twin" in out["error"] and redistribution in out["error"] and "--sources" in out["error"]
    assert cli.last.stderr.startswith("error:") and cli.last.stderr.strip().count("\n") == 0
    assert not (tmp_path / "r").exists()
    # leaving the source out works
    ok = cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "r"), "--sources", "demo")
    assert ok["configs"] == {"default": {"train": 18, "test": 24}, "demo": {"train": 18, "test": 24}}  # no twin: no leak
    private = ["push-to-hub", "me/x", "--dry-run", str(tmp_path / "p"), "--private"]
    if redistribution == "unknown":
        assert "--private" in out["error"]
        assert cli(*private)["policy"]["sources"]["twin"] == "unknown"
    else:
        assert "forbid" in cli(*private, expect=2)["error"]


@pytest.mark.parametrize("redistribution", ["noncommercial", "research_only"])
def test_noncommercial_needs_the_flag_and_gates_the_card(built, tmp_path, monkeypatch, redistribution):
    cli = _policy_cli(built, tmp_path, monkeypatch, redistribution=redistribution, license="CC-BY-NC-SA-4.0")
    out = cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "r"), expect=2)
    assert "twin" in out["error"] and "--allow-noncommercial" in out["error"]
    ok = cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "r"), "--allow-noncommercial")
    assert ok["gated"] and ok["policy"]["noncommercial"] == ["twin"]
    card = DatasetCard.load(tmp_path / "r" / "README.md")
    assert "twin" in card.data.extra_gated_prompt and card.data.extra_gated_fields
    assert "cc-by-nc-sa-4.0" in card.data.license
    first_paragraphs = card.text.split("## Configurations")[0]
    assert "Non-commercial / research use only" in first_paragraphs and "**twin**" in first_paragraphs


def test_registry_gated_flag_gates_even_allowed_sources(built, tmp_path, monkeypatch):
    cli = _policy_cli(built, tmp_path, monkeypatch, gated=True)
    ok = cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "r"))
    assert ok["gated"] and ok["policy"]["noncommercial"] == []
    header = yaml.safe_load((tmp_path / "r" / "README.md").read_text().split("---")[1])
    assert "extra_gated_fields" in header


def test_bad_options_are_one_line_errors(built, tmp_path, monkeypatch):
    cli = _policy_cli(built, tmp_path, monkeypatch)
    assert "repo id" in cli("push-to-hub", "too/many/parts", "--dry-run", str(tmp_path / "r"), expect=2)["error"]
    assert "nosuch" in cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "r"), "--sources", "nosuch",
                           expect=2)["error"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    assert "not empty" in cli("push-to-hub", "me/x", "--dry-run", str(tmp_path / "busy"), expect=2)["error"]
    # a real push without any token fails before any work
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    assert "HF_TOKEN" in cli("push-to-hub", "me/x", expect=2)["error"]
