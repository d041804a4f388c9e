"""Stage-1 commands: components, precompute, train-diffusion, generate, inpaint-defect, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import JSON_OPT, emit, run_level_errors


def components_cmd(
    preset: str = typer.Option(..., "--preset", help="tiny (random, CPU-sized) or sd15 (pretrained frozen parts)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (diffusers layout)."),
    vae: Optional[str] = typer.Option(None, "--vae", help="VAE hub id or local path (sd15 default: SD1.5's)."),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder",
                                               help="CLIP text tower id/path (sd15 default: openai/clip-vit-large-patch14)."),
    image_encoder: Optional[str] = typer.Option(None, "--image-encoder",
                                                help="CLIP image tower id/path (sd15 default: openai/clip-vit-base-patch32)."),
    seed: int = typer.Option(0, "--seed", help="tiny: seed of the random initialisation."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the frozen parts (VAE, CLIP text and image towers, tokenizer, image processor), the SD scheduler
    and the U-Net/captioner configs of a preset."""
    from ..components import write_components
    summary = write_components(preset, out, vae=vae, text_encoder=text_encoder, image_encoder=image_encoder, seed=seed)
    emit({"command": "components", **summary}, as_json)


def register(app: typer.Typer) -> None:
    """Add the stage-1 commands to `app`."""
    app.command("components")(run_level_errors("components")(components_cmd))
