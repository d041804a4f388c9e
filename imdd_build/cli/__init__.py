"""`imdd-build`: a thin Typer layer; each command parses options and calls one library function.

One module per command group; each exposes `register(app)` and never imports this module back. The
groups are registered below in the order `--help` lists the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..workspace import DEFAULT_WORKSPACE, Workspace
from . import build, caption, ingest, publish, review, sources

app = typer.Typer(name="imdd-build", help="Build the IMDD industrial-defect image-text corpus.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

# The only commands that may create a workspace; every other one needs an existing catalog.
CREATING_COMMANDS = ("ingest", "demo")


@app.callback()
def main_callback(
    ctx: typer.Context,
    workspace: Optional[Path] = typer.Option(None, "--workspace", envvar="IMDD_WORKSPACE",
                                             help=f"Workspace folder (default {DEFAULT_WORKSPACE})."),
) -> None:
    ctx.obj = Workspace(workspace, create=ctx.invoked_subcommand in CREATING_COMMANDS)


ingest.register(app)  # ingest
caption.register(app)  # caption
build.register(app)  # shard, demo, status, quarantine, version
publish.register(app)  # push-to-hub, dedupe, stats
review.register(app)  # review ...
sources.register(app)  # sources, taxonomy check


def main() -> None:
    from imdd_build.console import run_cli
    run_cli(app)
