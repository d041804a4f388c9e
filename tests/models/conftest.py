"""Session fixtures of the model-side tests: demo shards built by `imdd-build demo` and tiny components.

Built once per test session (a few seconds each) and shared read-only by every test in tests/models/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import imdd_models  # noqa: F401  (hides a broken torchvision before transformers is imported)
from imdd_build.cli import app as build_app


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory) -> Path:
    """`imdd-build demo` shards: 42 records (18 train normal, 24 test), Parquet + WebDataset, with masks."""
    ws = tmp_path_factory.mktemp("build-ws")
    out = ws / "demo-shards"
    result = CliRunner().invoke(build_app, ["--workspace", str(ws), "demo", "--out", str(out), "--workers", "1",
                                            "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["records"] == 42
    return out


@pytest.fixture(scope="session")
def tiny_components(tmp_path_factory) -> Path:
    """`imdd-models components --preset tiny` output."""
    from imdd_models.components import write_components
    out = tmp_path_factory.mktemp("components") / "tiny"
    write_components("tiny", out)
    return out
