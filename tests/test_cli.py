import json

import datasets
import pytest

from imdd_build.cli import app
from imdd_build.workspace import Workspace


def test_demo_runs_the_whole_pipeline(cli, workspace):
    out = cli("demo", "--workers", "2")
    assert out["records"] == 42 and out["quarantined"] == 0 and out["captioned"] == 42
    assert out["splits"] == {"test": 24, "train": 18}
    ds = datasets.load_dataset(out["out"])
    defective = [r for r in ds["test"] if r["label"] == "defective"]
    assert len(defective) == 18 and all(r["mask"] is not None for r in defective)
    assert {r["product"] for r in defective} == {"metal_plate", "woven_fabric", "ceramic_tile"}
    # a second demo run is a no-op on the catalog and rewrites identical shards
    manifest = (workspace / "demo-shards" / "manifest.json").read_text()
    again = cli("demo")
    assert again["records"] == 42 and again["captioned"] == 0
    assert (workspace / "demo-shards" / "manifest.json").read_text() == manifest


def test_status_quarantine_sources_version_print_json_last(cli, tmp_path):
    from fixtures import write_mvtec
    write_mvtec(tmp_path / "m")
    cli("ingest", "mvtec", "--root", str(tmp_path / "m"), "--workers", "1")
    status = cli("status")
    assert status["records"] == 9 and status["by_source"] == {"mvtec": 9} and status["quarantined"] == 3
    assert status["by_caption_status"] == {"none": 9}
    cap = cli("caption")
    assert cap["captioned"] == 9 and cap["uncaptioned"] == 0
    assert cli("status")["by_caption_status"] == {"draft": 9}
    q = cli("quarantine", "--source", "mvtec")
    assert q["count"] == 3 and all(set(i) == {"source", "path", "reason", "stage"} for i in q["items"])
    sources = {s["id"]: s for s in cli("sources")["sources"]}
    assert sources["mvtec"]["adapter"] and sources["visa"]["license"] == "CC-BY-4.0"
    assert cli("version")["version"]


def test_run_level_errors_are_one_line_and_json(cli, tmp_path):
    out = cli("ingest", "nosuch", "--root", str(tmp_path), expect=2)
    assert "nosuch" in out["error"]
    assert cli.last.stderr.strip().count("\n") == 0 and cli.last.stderr.startswith("error:")
    Workspace(cli.workspace).catalog().close()  # shard needs an existing workspace (an empty one will do)
    out = cli("shard", "--out", str(tmp_path / "o"), "--format", "csv", expect=2)
    assert "unknown shard format" in out["error"]


def test_human_output_without_json(workspace, tmp_path):
    from typer.testing import CliRunner
    Workspace(workspace).catalog().close()  # status reads an existing workspace
    result = CliRunner().invoke(app, ["--workspace", str(workspace), "status"])
    assert result.exit_code == 0 and "records" in result.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout.strip().splitlines()[-1])
