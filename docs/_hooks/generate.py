"""MkDocs hook: the reference pages' generated parts, computed from the code at build time.

A page holds a marker line `<!-- generated: NAME -->`; `on_page_markdown` replaces it with
* `cli imdd-build` / `cli imdd-models`: every command of that Typer app with its usage, every option
  and argument, its default and its help, as `--help` prints them;
* `sources-table`: the registry table (`imdd-build sources --markdown`, the one in README.md);
* `shard-columns`: the shard columns and their `datasets` feature types (`imdd_build.writers.rows.FEATURES`);
* `record-fields`: the fields of `imdd_build.record.Record`, their types and defaults.
The tests import this module and check that every command appears (tests/test_docs_site.py).
"""

from __future__ import annotations

import re

MARKER = re.compile(r"^<!-- generated: (?P<what>[\w -]+) -->$", re.M)
_DEFAULT = re.compile(r"\s*\[(?P<extra>[^\[\]]*)\]\s*$")


def _text(text: str, cell: bool = False) -> str:
    """Help text as Markdown: `<` and `>` outside code spans escaped (never read as HTML tags), and in a
    table cell `|` too (Python-Markdown's tables leave pipes inside code spans alone)."""
    parts = re.split(r"(`[^`]*`)", str(text))
    out = []
    for p in parts:
        if not p.startswith("`"):
            p = p.replace("<", "&lt;").replace(">", "&gt;")
            if cell:
                p = p.replace("|", "\\|")
        out.append(p)
    return "".join(out)


def _cell(text: str) -> str:
    return _text(" ".join(str(text).split()), cell=True)


def _apps():
    from imdd_build.cli import app as build_app
    from imdd_models.cli import app as models_app
    return {"imdd-build": build_app, "imdd-models": models_app}


def walk_commands(program: str):
    """(path, click command) for every leaf command of a program, in the app's order."""
    import typer

    def walk(cmd, path):
        sub = getattr(cmd, "commands", None)
        if sub:
            for name, child in sub.items():
                yield from walk(child, [*path, name])
        else:
            yield " ".join(path), cmd

    root = typer.main.get_command(_apps()[program])
    return root, list(walk(root, [program]))


def _params_table(cmd, ctx) -> list[str]:
    rows = []
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        spelling, help_text = record
        extra = ""
        m = _DEFAULT.search(help_text)
        if m:
            extra, help_text = m.group("extra"), help_text[:m.start()]
        default = ""
        for part in (p.strip() for p in extra.split(";")):
            if part.startswith("default:"):
                default = part[len("default:"):].strip()
            elif part:
                help_text = f"{help_text} ({part})" if help_text else part
        if type(param).__name__.endswith("Argument"):
            name, _, kind = spelling.partition(" ")
            spelling = f"{name.upper()} {kind}".strip() + " (argument)"
        rows.append(f"| `{spelling}` | {_cell(default)} | {_cell(help_text)} |")
    if not rows:
        return ["No options."]
    return ["| option | default | meaning |", "| --- | --- | --- |", *rows]


def cli_markdown(program: str) -> str:
    """The reference of one program: global options, then one section per command."""
    import typer

    root, commands = walk_commands(program)
    lines = [f"## `{program}`", "", _cell(root.help or ""), ""]
    root_ctx = typer.Context(root, info_name=program)
    if root.params:
        lines += ["Global options (before the command name):", "", *_params_table(root, root_ctx), ""]
    lines += ["| command | what it does |", "| --- | --- |"]
    for path, cmd in commands:
        first = (cmd.help or "").strip().split("\n\n", 1)[0]
        lines.append(f"| [`{path}`](#{path.replace(' ', '-')}) | {_cell(first)} |")
    lines.append("")
    for path, cmd in commands:
        ctx = typer.Context(cmd, info_name=path)
        usage = " ".join(cmd.get_usage(ctx).split()).removeprefix("Usage: ")
        lines += [f"### `{path}`", "", _text((cmd.help or "").strip()), "", f"```text\n{usage}\n```", "",
                  *_params_table(cmd, ctx), ""]
    return "\n".join(lines)


def sources_markdown() -> str:
    from imdd_build.registry import load_registry, markdown_table
    return markdown_table(load_registry())


def shard_columns_markdown() -> str:
    from imdd_build.writers.rows import FEATURES

    def kind(feature) -> str:
        if isinstance(feature, dict) and "_type" in feature:
            t = feature["_type"]
            if t == "Value":
                return feature["dtype"]
            if t == "Image":
                return "Image"
            if t == "List":
                return f"list of {kind(feature['feature'])}"
        if isinstance(feature, dict):
            return "{" + ", ".join(f"{k}: {kind(v)}" for k, v in feature.items() if k != "_type") + "}"
        return str(feature)

    rows = [f"| `{name}` | {_cell(kind(feature))} |" for name, feature in FEATURES.items()]
    return "\n".join(["| column | type |", "| --- | --- |", *rows])


def record_fields_markdown() -> str:
    """Every field of `imdd_build.record.Record` with its type and default (pydantic's own view)."""
    from pydantic_core import PydanticUndefined

    from imdd_build.record import Record

    def type_name(annotation) -> str:
        text = getattr(annotation, "__name__", None) if getattr(annotation, "__args__", None) is None else None
        return text or str(annotation).replace("typing.", "").replace("imdd_build.record.", "")

    rows = []
    for name, field in Record.model_fields.items():
        default = "" if field.default is PydanticUndefined and field.default_factory is None else (
            f"{field.default_factory.__name__}()" if field.default_factory else repr(field.default))
        rows.append(f"| `{name}` | `{type_name(field.annotation)}` | {_cell(default)} |")
    return "\n".join(["| field | type | default |", "| --- | --- | --- |", *rows])


def render(what: str) -> str:
    what = what.strip()
    if what.startswith("cli "):
        return cli_markdown(what.split(" ", 1)[1].strip())
    if what == "sources-table":
        return sources_markdown()
    if what == "shard-columns":
        return shard_columns_markdown()
    if what == "record-fields":
        return record_fields_markdown()
    raise ValueError(f"unknown generated block {what!r}")


def expand(markdown: str) -> str:
    return MARKER.sub(lambda m: render(m.group("what")), markdown)


def on_page_markdown(markdown, page=None, config=None, files=None):
    return expand(markdown)
