"""`imdd-models`: a thin Typer layer over imdd_models; one module per command group.

Each command module exposes `register(app)` and never imports this module back. To add a group, import
its module below and call its `register(app)`.
"""

from __future__ import annotations

import typer

from . import diffusion
from . import evaluate as evaluation
from . import segmentation  # noqa: I001  (one line per command group: fewer merge conflicts)

app = typer.Typer(name="imdd-models", help="Train and use diffusion and segmentation models on IMDD shards.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)



@app.callback()
def _group() -> None:
    """Train and use diffusion and segmentation models on IMDD shards."""
    from .common import quiet_third_party
    quiet_third_party()


diffusion.register(app)
evaluation.register(app)
segmentation.register(app)


def main() -> None:
    from imdd_build.console import run_cli
    run_cli(app)
