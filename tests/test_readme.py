"""The code blocks of README.md and of the docs pages run (see tests/docs_blocks.py for the rules):
each ```python and ```bash block is executed in a folder where `imdd-build demo` and a bare
`imdd-build shard` ran (so `imdd-workspace/demo-shards` and `imdd-1m` exist), in a fresh interpreter or shell.

A block that cannot run there (real downloads, keys, a server, a GPU) is preceded by the line
`<!-- readme-test: skip (why) -->`; the reason shows in the test summary (pytest -rs). The walkthrough
pages run in order in their own folder (tests/test_docs_walkthrough.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from docs_blocks import DRIVER, FENCE, MARKER, REPO, Block, is_walkthrough, pages, readme_blocks, runnable, shell_env

BLOCKS = [b for p in pages() if not is_walkthrough(p) for b in runnable(p)]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_marker_sits_right_above_a_code_block(page: Path):
    lines = page.read_text().splitlines()
    for n, line in enumerate(lines):
        if "readme-test:" in line and line.startswith("<!--"):
            assert MARKER.match(line.strip()), f"{page.name}:{n + 1}: malformed marker {line!r}"
            following = next(x for x in lines[n + 1:] if x.strip())
            assert FENCE.match(following), f"{page.name}:{n + 1}: the marker is not followed by a code block"


def test_the_extractor_sees_markers_and_languages():
    text = ("a\n\n<!-- readme-test: skip (needs data) -->\n```bash\nfalse\n```\n"
            "```python\nx = 1\n```\n```\nlayout\n```\n")
    got = [(b.line, b.lang, b.code, b.skip) for b in readme_blocks(text)]
    assert got == [(4, "bash", "false\n", "needs data"), (7, "python", "x = 1\n", None), (10, "", "layout\n", None)]


def test_the_readme_and_the_guides_have_blocks_that_run():
    assert any(b.page == "README.md" and not b.skip for b in BLOCKS)
    assert any(b.page.startswith("docs/") and not b.skip for b in BLOCKS)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> tuple[Path, dict]:
    """A folder where `imdd-build demo` and a bare `imdd-build shard` ran, and the environment to run in."""
    here = tmp_path_factory.mktemp("readme")
    env = shell_env(here)
    work = here / "work"
    work.mkdir()
    subprocess.run(["imdd-build", "demo", "--workers", "1"], cwd=work, env=env, check=True, capture_output=True)
    # a bare `shard` writes ./imdd-1m, so `load_dataset("imdd-1m")` runs as the card writes it
    subprocess.run(["imdd-build", "shard", "--workers", "1"], cwd=work, env=env, check=True, capture_output=True)
    return work, env


@pytest.fixture(scope="module")
def python_results(demo_dir) -> dict[str, str | None]:
    """Each python block's failure (None: it ran) against the demo's shards, and again against the
    same records sharded with JPEG image members (`--image-ext jpg`, what JPEG sources give)."""
    work, env = demo_dir
    jpeg = work.parent / "work-jpeg"
    subprocess.run(["imdd-build", "--workspace", str(work / "imdd-workspace"), "shard", "--out",
                    str(jpeg / "imdd-workspace" / "demo-shards"), "--image-ext", "jpg", "--workers", "1"],
                   env=env, check=True, capture_output=True)
    subprocess.run(["imdd-build", "--workspace", str(work / "imdd-workspace"), "shard", "--out", str(jpeg / "imdd-1m"),
                    "--image-ext", "jpg", "--workers", "1"], env=env, check=True, capture_output=True)
    todo = [(b.where, b.code) for b in BLOCKS if b.lang == "python" and not b.skip]
    results: dict[str, str | None] = {}
    for folder in (work, jpeg):
        run = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(todo), cwd=folder, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        for where, failure in json.loads(run.stdout.strip().splitlines()[-1]).items():
            if failure and not results.get(where):
                results[where] = f"in {folder.name}: {failure}"
            results.setdefault(where, None)
    return results


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.where}:{b.lang}" for b in BLOCKS])
def test_readme_block_runs(block: Block, request):
    if block.skip:
        pytest.skip(f"{block.where}: {block.skip}")
    if block.lang == "python":
        failure = request.getfixturevalue("python_results")[block.where]
        assert failure is None, f"{block.where} failed:\n{block.code}\n{failure[-3000:]}"
        return
    work, env = request.getfixturevalue("demo_dir")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{block.where} failed:\n{block.code}\n{result.stderr[-3000:]}"
