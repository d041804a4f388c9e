from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from imdd_build.cli import app  # noqa: E402


class Cli:
    """Runs `imdd-build` in-process against one workspace; `--json` results parsed from stdout's last line."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0) -> dict:
        result = self.runner.invoke(app, ["--workspace", str(self.workspace), *args, "--json"])
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr, result.exception)
        self.last = result
        lines = result.stdout.strip().splitlines()
        return json.loads(lines[-1])


@pytest.fixture
def fast_llm_retries(monkeypatch):
    """A short LLM backoff (the product waits 0.5 s, doubling): failure tests retry in milliseconds."""
    from imdd_build import retry

    monkeypatch.setattr(retry, "LLM_BACKOFF", retry.Backoff(base=0.01, cap=30.0))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def cli(workspace: Path) -> Cli:
    return Cli(workspace)


@pytest.fixture(autouse=True)
def _class_masks_agree_with_masks(request):
    """After every adapter test: each record its fixtures produced keeps `mask` and `class_mask` in
    agreement, whatever the adapter and resize mode (tests/sources/class_mask_check.py)."""
    adapter_test = request.node.path.parent.name == "sources" and "tmp_path" in request.fixturenames
    tmp_path = request.getfixturevalue("tmp_path") if adapter_test else None  # set up before: torn down after
    yield
    if tmp_path is None:
        return
    from sources.class_mask_check import check_class_masks

    for catalog in sorted(tmp_path.rglob("catalog.sqlite")):
        check_class_masks(catalog.parent)
