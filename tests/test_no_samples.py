"""A root that yields no sample is a run-level error naming what was expected there, for every adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imdd_build.cli import app
from imdd_build.sources import ADAPTERS
from imdd_build.workspace import Workspace


def write_dlhsd_benchmarks(root: Path) -> Path:
    """The DLHSD repository's `benchmarks/` folder: feature CSVs per benchmark and split, OASIS
    layouts, a README -- and no image clips (those come in a separate tarball)."""
    bench = root / "benchmarks"
    for b in ("iccad", "iccad1", "iccad2", "iccad3", "iccad4", "iccad5"):
        for split in ("train", "test"):
            folder = bench / b / split
            folder.mkdir(parents=True)
            (folder / "label.csv").write_text("1\n0\n0\n")
            if b != "iccad":
                (folder / "dc.csv").write_text("0.1,0.2\n0.3,0.4\n0.5,0.6\n")
                for k in range(1, 4):
                    (folder / f"ac{k}.csv").write_text("0.0,1.0\n")
    for n in (1, 4, 5):
        (bench / f"iccad12-{n}.OAS").write_bytes(b"%SEMI-OASIS\r\n")
    (bench / "README.md").write_text("feature tensors of the ICCAD 2012 benchmarks\n")
    return bench


def test_iccad12_dlhsd_benchmarks_folder_is_an_error(tmp_path, cli, workspace):
    bench = write_dlhsd_benchmarks(tmp_path)
    out = cli("ingest", "iccad12", "--root", str(bench), "--workers", "1", expect=2)
    assert out["command"] == "ingest"
    assert out["error"].startswith(f"{bench}: no iccad12 samples found; expected PNG layout clips in iccad1")
    assert out["error"].endswith("found 0 image(s) among 56 file(s) (52 .csv, 3 .oas, 1 .md)")
    assert [line for line in cli.last.stderr.splitlines() if line.startswith("error: ")] == [f"error: {out['error']}"]
    # nothing was written: no run recorded, no records
    with Workspace(workspace).catalog() as catalog:
        assert catalog.count(source="iccad12") == 0
        assert catalog.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_sources_roots_reports_the_same_error(tmp_path, cli):
    bench = write_dlhsd_benchmarks(tmp_path)
    roots = tmp_path / "roots.yaml"
    roots.write_text(f"iccad12: {bench}\n")
    out = cli("sources", "--roots", str(roots))
    check = out["roots"]["iccad12"]
    assert check["status"] == "error" and "no iccad12 samples found; expected PNG layout clips" in check["error"]
    assert out["missing"] == ["iccad12"]


def test_all_quarantined_names_the_first_reason(tmp_path, cli):
    """Clips whose class cannot be told are all quarantined: still no sample, so still an error."""
    from PIL import Image

    for i in range(3):
        path = tmp_path / "iccad1/train" / f"clip{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8)).save(path)
    out = cli("ingest", "iccad12", "--root", str(tmp_path), "--workers", "1", expect=2)
    assert out["error"].endswith("; all 3 item(s) found were quarantined (first: iccad1/train/clip0.png: "
                                 "class not given by folder or file name (expected HS/NHS or hotspot/non-hotspot))")


def test_category_filter_that_matches_nothing(tmp_path, cli):
    from PIL import Image

    path = tmp_path / "iccad1/train/HS/0.png"
    path.parent.mkdir(parents=True)
    Image.new("L", (8, 8)).save(path)
    out = cli("ingest", "iccad12", "--root", str(tmp_path), "--category", "iccad3", "--workers", "1", expect=2)
    assert out["error"].startswith(f"{tmp_path} (--category iccad3): no iccad12 samples found")


def _args(source: str, root: Path) -> list[str]:
    generic = getattr(ADAPTERS[source], "generic", False)
    return ["ingest", source, "--root", str(root), "--workers", "1", *(["--license", "MIT"] if generic else [])]


@pytest.mark.parametrize("source", sorted(ADAPTERS))
def test_no_adapter_accepts_a_root_without_samples(tmp_path, cli, source):
    """Every adapter, on a folder holding only a stray text file (csv: a header-only manifest)."""
    if source == "csv":
        root = tmp_path / "manifest.csv"
        root.write_text("path,label\n")
    else:
        root = tmp_path / "download"
        root.mkdir()
        (root / "notes.txt").write_text("downloaded later\n")
    result = cli.runner.invoke(app, ["--workspace", str(cli.workspace), *_args(source, root), "--json"])
    assert result.exit_code == 2, (source, result.stdout, result.exception)
    error = json.loads(result.stdout.strip().splitlines()[-1])["error"]
    assert str(root) in error, (source, error)
    if f"no {source} samples found" in error:  # else the adapter rejected the root while locating it
        found = "the file manifest.csv" if source == "csv" else "0 image(s) among 1 file(s) (1 .txt)"
        assert error.endswith(f"expected {ADAPTERS[source].expected}; found {found}")
