"""Publishing commands (push-to-hub, dedupe, stats): registered on the main Typer app."""

from __future__ import annotations

from .cli import app  # noqa: F401
