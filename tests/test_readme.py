"""The README's code blocks run: every ```python and ```bash block is executed in a folder where
`imdd-build demo` and a bare `imdd-build shard` ran (so `imdd-workspace/demo-shards` and `imdd-1m` exist), in a fresh interpreter or shell.

A block that cannot run there (real downloads, keys, a server, a GPU) is preceded by the line
`<!-- readme-test: skip (why) -->`; the reason shows in the test summary (pytest -rs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MARKER = re.compile(r"^<!-- readme-test: skip \((?P<why>[^)]+)\) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
RUN = ("python", "bash")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block with its language and the skip reason of a marker right above it."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        above = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(above.strip())
        blocks.append(Block(i + 1, m.group("lang"), "\n".join(lines[i + 1:j]) + "\n",
                            marker.group("why") if marker else None))
        i = j + 1
    return blocks


BLOCKS = [b for b in readme_blocks(README.read_text()) if b.lang in RUN]


def test_every_marker_sits_right_above_a_code_block():
    lines = README.read_text().splitlines()
    for n, line in enumerate(lines):
        if "readme-test:" in line and line.startswith("<!--"):
            assert MARKER.match(line.strip()), f"README.md:{n + 1}: malformed marker {line!r}"
            following = next(x for x in lines[n + 1:] if x.strip())
            assert FENCE.match(following), f"README.md:{n + 1}: the marker is not followed by a code block"


def test_the_extractor_sees_markers_and_languages():
    text = ("a\n\n<!-- readme-test: skip (needs data) -->\n```bash\nfalse\n```\n"
            "```python\nx = 1\n```\n```\nlayout\n```\n")
    got = [(b.line, b.lang, b.code, b.skip) for b in readme_blocks(text)]
    assert got == [(4, "bash", "false\n", "needs data"), (7, "python", "x = 1\n", None), (10, "", "layout\n", None)]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> tuple[Path, dict]:
    """A folder where `imdd-build demo` ran, and an environment whose `imdd-build` and `python`
    are this checkout's (as after `source .venv/bin/activate`)."""
    here = tmp_path_factory.mktemp("readme")
    shims = here / "bin"
    shims.mkdir()
    (shims / "imdd-build").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m imdd_build "$@"\n')
    (shims / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMDD_")}
    env.update(PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p))
    work = here / "work"
    work.mkdir()
    subprocess.run(["imdd-build", "demo", "--workers", "1"], cwd=work, env=env, check=True, capture_output=True)
    # a bare `shard` writes ./imdd-1m, so the README's `load_dataset("imdd-1m")` runs as the card writes it
    subprocess.run(["imdd-build", "shard", "--workers", "1"], cwd=work, env=env, check=True, capture_output=True)
    return work, env


# Runs the python blocks one after the other in one fresh interpreter (the imports are paid once),
# each in its own namespace: a block must not rely on another's variables.
_DRIVER = """
import json, sys, traceback
results = {}
for line, code in json.load(sys.stdin):
    try:
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__main__"})
        results[line] = None
    except BaseException:
        results[line] = traceback.format_exc()
print(json.dumps(results))
"""


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
    todo = [(b.line, b.code) for b in BLOCKS if b.lang == "python" and not b.skip]
    results: dict[str, str | None] = {}
    for folder in (work, jpeg):
        run = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(todo), cwd=folder, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        for line, failure in json.loads(run.stdout.strip().splitlines()[-1]).items():
            if failure and not results.get(line):
                results[line] = f"in {folder.name}: {failure}"
            results.setdefault(line, None)
    return results


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}:{b.lang}" for b in BLOCKS])
def test_readme_block_runs(block: Block, request):
    if block.skip:
        pytest.skip(f"README.md:{block.line}: {block.skip}")
    if block.lang == "python":
        failure = request.getfixturevalue("python_results")[str(block.line)]
        assert failure is None, f"README.md:{block.line} failed:\n{block.code}\n{failure[-3000:]}"
        return
    work, env = request.getfixturevalue("demo_dir")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"README.md:{block.line} failed:\n{block.code}\n{result.stderr[-3000:]}"
