"""Commands that read a workspace never create one: in a folder without one they say so and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imdd_build.cli import app

READ_COMMANDS = [
    ["status"],
    ["quarantine"],
    ["shard", "--out", "shards"],
    ["caption"],
    ["dedupe"],
    ["stats"],
    ["push-to-hub", "me/imdd", "--dry-run", "publish-out"],
    ["review", "status"],
    ["review", "export", "--out", "export.json"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_read_commands_in_an_empty_folder_create_nothing(tmp_path: Path, monkeypatch, args) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMDD_WORKSPACE", raising=False)
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["error"].startswith("no workspace at imdd-workspace"), line
    assert "no workspace at imdd-workspace" in " ".join(result.stderr.split())
    assert sorted(os.listdir(tmp_path)) == []


def test_explicit_workspace_path_is_named(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "ws"
    result = CliRunner().invoke(app, ["--workspace", str(target), "status"])
    assert result.exit_code == 2
    assert f"no workspace at {target}" in " ".join(result.stderr.split())
    assert not (tmp_path / "nowhere").exists()


def test_ingest_and_demo_still_create_the_workspace(tmp_path: Path, cli) -> None:
    cli("demo", "--workers", "1")
    assert cli("status")["records"] > 0
