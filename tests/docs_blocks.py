"""The code blocks of README.md and every page under docs/, for the tests that run them.

Every ```python and ```bash block is run by a test, unless the line right above it is
`<!-- readme-test: skip (why) -->`; the reason shows in the test summary (pytest -rs). Other fences
(```text, ```yaml, ...) show layouts and files and are not run.

A page whose first line is `<!-- docs-test: walkthrough -->` is a sequence: its blocks run in order
in one fresh folder (tests/test_docs_walkthrough.py). Every other page's blocks run each on its own
in a folder where `imdd-build demo` and a bare `imdd-build shard` ran (tests/test_readme.py).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
MARKER = re.compile(r"^<!-- readme-test: skip \((?P<why>[^)]+)\) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
WALKTHROUGH = "<!-- docs-test: walkthrough -->"
RUN = ("python", "bash")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None
    page: str = ""  # the page's path relative to the repository

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def readme_blocks(text: str, page: str = "") -> list[Block]:
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
                            marker.group("why") if marker else None, page))
        i = j + 1
    return blocks


def pages() -> list[Path]:
    """README.md and every Markdown page of the site."""
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def is_walkthrough(path: Path) -> bool:
    return path.read_text().startswith(WALKTHROUGH)


def runnable(path: Path) -> list[Block]:
    page = path.relative_to(REPO).as_posix()
    return [b for b in readme_blocks(path.read_text(), page) if b.lang in RUN]


def shell_env(here: Path) -> dict:
    """An environment whose `imdd-build`, `imdd-models` and `python` are this checkout's (as after
    `source .venv/bin/activate`), without IMDD_* settings of the caller."""
    shims = here / "bin"
    shims.mkdir(parents=True, exist_ok=True)
    for name, target in (("imdd-build", "-m imdd_build "), ("imdd-models", "-m imdd_models "), ("python", "")):
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {target}"$@"\n')
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMDD_")}
    env.update(PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p))
    return env


# Runs python blocks one after the other in one fresh interpreter (the imports are paid once),
# each in its own namespace: a block must not rely on another's variables.
DRIVER = """
import json, sys, traceback
results = {}
for where, code in json.load(sys.stdin):
    try:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
        results[where] = None
    except BaseException:
        results[where] = traceback.format_exc()
print(json.dumps(results))
"""
