"""Terminal output: rich progress bars and messages on stderr, the result on stdout.

With `--json` the last line of stdout is one JSON object (also on errors: `{"error": ...}`).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

err = Console(stderr=True, highlight=False, soft_wrap=True)  # a per-file message stays one line
out = Console(highlight=False, soft_wrap=True)


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "", style="cyan")


class Bar:
    """A progress task that learns its total late (adapters list files first)."""

    def __init__(self, progress: Progress, description: str):
        self.progress = progress
        self.task = progress.add_task(description, total=None)

    def total(self, n: int) -> None:
        self.progress.update(self.task, total=n)

    def advance(self, *_args) -> None:
        self.progress.advance(self.task)

    def add(self, n: int) -> None:
        self.progress.advance(self.task, n)


@contextmanager
def progress_bar(description: str) -> Iterator[Bar]:
    """A rich progress bar on stderr with count, rate, elapsed time and ETA."""
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err) as progress:
        yield Bar(progress, description)


def emit(result: dict, as_json: bool, title: str | None = None) -> None:
    """Print the command's result: one JSON line, or a readable summary table."""
    if as_json:
        sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=title or result.get("command", "result"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in result.items():
        if key == "command":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = f"{len(value)} item(s)" if value and isinstance(value[0], dict) else ", ".join(map(str, value)) or "-"
        table.add_row(key, str(value))
    out.print(table)
    for key, value in result.items():  # lists of files with reasons, one line each, after the table
        if isinstance(value, list) and value and isinstance(value[0], dict) and "reason" in value[0]:
            out.print(f"[bold]{key}[/bold]:")
            for item in value:
                out.print(f"  {item.get('path')}: {item['reason']}", markup=False, highlight=False)


def _first_line(message: str) -> str:
    """The message's first line; for an error re-raised from a torch DataLoader worker ("Caught X in
    DataLoader worker process N." + the worker's traceback), the worker's own message instead."""
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) > 2 and lines[0].startswith("Caught ") and lines[1].startswith("Original Traceback"):
        name, _, text = lines[-1].partition(": ")
        return text or name
    return lines[0] if lines else message


def one_line_errors(command: str, kinds: tuple[type[BaseException], ...]):
    """Decorator for a CLI command: the run-level `kinds` become one `error:` line (and, with `--json`,
    `{"command", "error"}` as the last stdout line) and exit code 2; anything else propagates."""
    import typer  # the CLIs' dependency; this module is also imported by library code

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except kinds as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                message = _first_line(str(message)) if message else type(exc).__name__
                err.print(f"[red]error:[/red] {message}")
                if kwargs.get("as_json"):
                    sys.stdout.write(json.dumps({"command": command, "error": message}) + "\n")
                raise typer.Exit(2) from None
        return inner
    return wrap


def run_cli(app, argv: list[str] | None = None) -> None:
    """Run a Typer app as a console script. With `--json`, an option that does not parse (`--max-steps abc`,
    a value out of its range), which Typer reports before any command runs, also prints `{"command", "error"}`
    as the last stdout line, as every run-level error does; without `--json` it is Typer's own report."""
    import typer
    argv = sys.argv[1:] if argv is None else argv
    if "--json" not in argv:
        app(args=argv)
        return
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:  # click's UsageError/BadParameter/NoSuchOption under Typer's name
        show = getattr(exc, "show", None)
        if callable(show):
            show()  # the usual "Usage: ... Error: ..." on stderr
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        command = _command_name(app, argv)
        sys.stdout.write(json.dumps({"command": command, "error": _first_line(message)}) + "\n")
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except (KeyboardInterrupt, EOFError):
        err.print("Aborted!")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _command_name(app, argv: list[str]) -> str | None:
    """The command a command line runs, as run-level errors name it ("ingest", "review enqueue"): the first
    argument that is a command of `app`, then of its group; not an option's value (`--workspace W`)."""
    commands = {c.name: None for c in app.registered_commands}
    commands.update({g.name: g.typer_instance for g in app.registered_groups})
    for i, arg in enumerate(argv):
        if arg in commands:
            group = commands[arg]
            if group is not None:
                sub = {c.name for c in group.registered_commands}
                following = next((a for a in argv[i + 1:] if a in sub), None)
                return f"{arg} {following}" if following else arg
            return arg
    return None


def emit_rows(result: dict, as_json: bool, columns: list[str], rows: list[list], title: str,
              notes: list[str] | None = None) -> None:
    """A result whose content is a list of rows: with --json, `result` as one JSON line; otherwise a table
    with a header (`columns`, one row per item) on stdout, then `notes` (one line each)."""
    if as_json:
        emit(result, True)
        return
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text("-" if v is None or v == "" else str(v)) for v in row))  # never markup: list[str]
    out.print(table)
    for line in notes or []:
        out.print(line, markup=False, highlight=False)
