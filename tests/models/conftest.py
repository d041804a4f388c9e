"""Session fixtures of the model-side tests: demo shards built by `imdd-build demo` and tiny components.

Built once per test session (a few seconds each) and shared read-only by every test in tests/models/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imdd_models import hf_ready
hf_ready()  # transformers/diffusers importable beside a broken torchvision (tests import them directly)
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


# The tiny models gain nothing from intra-op threads; on a shared 2-core machine extra threads only spin.
import torch  # noqa: E402

torch.set_num_threads(1)


def invoke(app, *args: str, expect: int = 0) -> dict:
    """Run an `imdd-models` command in-process with --json; its last stdout line parsed."""
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == expect, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:], result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def demo_latents(tmp_path_factory, demo_shards, tiny_components) -> Path:
    """Latent shards of all 42 demo records (8 per shard, flipped latents too)."""
    from imdd_models.diffusion.precompute import precompute
    out = tmp_path_factory.mktemp("latents") / "demo"
    precompute(str(demo_shards), tiny_components, out, shard_size=8, batch_size=8, flip=True)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_latents, tiny_components) -> tuple[Path, dict]:
    """A 40-step tiny training run through the CLI: (model folder, its --json summary)."""
    from imdd_models.cli import app
    out = tmp_path_factory.mktemp("runs") / "run40"
    summary = invoke(app, "train-diffusion", "--config", "tiny", "--data", str(demo_latents), "--components",
                     str(tiny_components), "--out", str(out), "--max-steps", "40")
    return out, summary
