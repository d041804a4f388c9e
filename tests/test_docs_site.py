"""The documentation as a whole: a short README, no reference to files outside the repository, one
name for the shard folder, links that lead somewhere, a CLI reference that names every command, and
`mkdocs build --strict` (skipped when the `docs` extra is not installed; .ci/run always builds it)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docs_blocks import DOCS, REPO, is_walkthrough, pages, readme_blocks, runnable

README = REPO / "README.md"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "_hooks" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short_and_starts_with_the_two_setup_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    first = readme_blocks(text, "README.md")[0]
    lines = first.code.splitlines()
    assert len(lines) == 2 and first.lang == "bash"
    assert "imdd-build demo" in lines[0] and "imdd-models demo" in lines[0]  # one runs the demo
    assert "'.[test,models]'" in lines[1] and lines[1].endswith("python -m pytest")  # one runs the tests
    assert text.splitlines()[0] == "# imdd"
    assert next(i for i, line in enumerate(text.splitlines()) if line.startswith("```")) < 5


# issue numbers, sibling checkouts and the research notes outside the repository
FORBIDDEN = re.compile(r"\.\./shared|/work/|REFERENCE\.md|anchors-models|\bissues?\s*#?\d+|(?<![\w/])#\d+\b", re.I)
# the shard folder has one name: ./imdd-1m
OTHER_SHARD_NAMES = re.compile(r"imdd-shards|~/imdd-1m|shards/\s")


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_reference_outside_the_repository_and_one_shard_folder_name(page: Path):
    for n, line in enumerate(page.read_text().splitlines(), 1):
        assert not FORBIDDEN.search(line), f"{page.name}:{n}: {line.strip()}"
        assert not OTHER_SHARD_NAMES.search(line), f"{page.name}:{n}: the shard folder is ./imdd-1m: {line.strip()}"


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_lead_to_files_of_the_repository(page: Path):
    """What GitHub shows: every relative link of a page names a file that exists (the mkdocs build also
    checks the links between pages and their anchors)."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    for m in LINK.finditer(text):
        target = m.group("target")
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.relative_to(REPO)}: broken link {target}"
        assert REPO in path.parents or path == REPO, f"{page.relative_to(REPO)}: {target} leaves the repository"


def test_every_page_is_in_the_navigation_and_every_nav_entry_exists():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def entries(nav):
        for item in nav:
            for value in item.values():
                yield from (entries(value) if isinstance(value, list) else [value])

    nav = set(entries(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_hooks" not in p.parts}
    assert nav == on_disk


def test_the_cli_reference_names_every_command_and_option():
    gen = _hooks()
    page = gen.expand((DOCS / "reference" / "cli.md").read_text())
    for program in ("imdd-build", "imdd-models"):
        _, commands = gen.walk_commands(program)
        assert len(commands) >= 10
        for path, cmd in commands:
            assert f"### `{path}`" in page, f"the CLI reference lacks {path}"
            section = page.split(f"### `{path}`", 1)[1].split("\n### ", 1)[0]
            for param in cmd.params:
                if param.param_type_name == "option" and not param.hidden:
                    assert f"`{param.opts[0]}" in section, f"{path}: {param.opts[0]} missing"
    assert "review serve" in page and "train-diffusion" in page
    assert "| `--out <path>` | imdd-1m |" in page  # defaults are shown (shard --out)


def test_generated_sources_table_is_the_readme_table():
    table = _hooks().render("sources-table")
    assert table in README.read_text()


def test_shard_schema_lists_every_column():
    from imdd_build.writers.rows import FEATURES
    text = _hooks().render("shard-columns")
    for name in FEATURES:
        assert f"| `{name}` |" in text


def test_the_walkthrough_is_a_page_of_the_site_and_the_readme_quickstart_is_part_of_it():
    walkthroughs = [p for p in pages() if is_walkthrough(p)]
    assert [p.relative_to(DOCS).as_posix() for p in walkthroughs] == ["getting-started/walkthrough.md"]

    def commands(code: str) -> list[str]:
        joined = re.sub(r"\\\n\s*", " ", code)
        return [" ".join(line.split("  #")[0].split()) for line in joined.splitlines() if line.strip()]

    done = {c for b in runnable(walkthroughs[0]) for c in commands(b.code)}
    text = README.read_text()
    lines = text.splitlines()
    heading = lambda b: next((x for x in reversed(lines[:b.line]) if x.startswith("## ")), "")  # noqa: E731
    quick = next(b for b in readme_blocks(text, "README.md") if heading(b).startswith("## Quickstart"))
    assert 5 <= len(quick.code.splitlines()) <= 10
    for command in commands(quick.code):
        assert command in done, f"the README quickstart runs {command!r}, which the walkthrough does not"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="the docs extra is not installed (pip install -e '.[docs]'); .ci/run builds the site")
def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    run = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                           "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr[-4000:]
    html = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "imdd-models train-seg" in html and "imdd-build push-to-hub" in html
    assert "<!-- generated:" not in html


def test_record_reference_lists_every_field():
    from imdd_build.record import Record
    text = _hooks().render("record-fields")
    for name in Record.model_fields:
        assert f"| `{name}` |" in text
