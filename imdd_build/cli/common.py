"""What every `imdd-build` command module shares: the `--json` option, the workspace of the run and
the run-level error decorator. Command modules import this, never the app (no import cycle)."""

from __future__ import annotations

import typer

from ..console import one_line_errors
from ..errors import RunError
from ..sources import RootError
from ..workspace import Workspace

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object as the last line of stdout.")


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace the app's callback opened for this run."""
    return ctx.obj


def run_level_errors(command: str):
    """Run-level failures (`RunError`, a bad root, a missing or undecodable input file) become one clear
    line and exit code 2; any other exception is a bug and keeps its traceback."""
    return one_line_errors(command, (RunError, RootError, FileNotFoundError, UnicodeDecodeError))
