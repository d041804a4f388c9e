"""Stage-1 commands: components, precompute, train-diffusion, generate, inpaint-defect, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import JSON_OPT, RunError, check_device, command_line, emit, err, progress_bar, run_level_errors

# Options the sampling commands (generate, inpaint-defect) share; device also train-diffusion's.
MODEL_OPT = typer.Option(..., "--model", help="Trained model folder (train-diffusion --out).")
STEPS_OPT = typer.Option(30, "--steps", min=1, help="Sampling steps (DDIM).")
GUIDANCE_OPT = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale.")
SEED_OPT = typer.Option(0, "--seed", help="Seed of the initial noise: the same seed, model and options give "
                                           "the same images.")
DEVICE_OPT = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available).")


def components_cmd(
    preset: str = typer.Option(..., "--preset", help="tiny (random, CPU tests), small (random, 128 px: CPU "
                                                     "real-data runs), sd15 (pretrained frozen parts) or sd15-random "
                                                     "(sd15 shapes, random: benchmarks)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (diffusers layout)."),
    vae: Optional[str] = typer.Option(None, "--vae", help="VAE hub id or local path (sd15 default: SD1.5's)."),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder",
                                               help="CLIP text tower id/path (sd15: openai/clip-vit-large-patch14)."),
    image_encoder: Optional[str] = typer.Option(None, "--image-encoder",
                                                help="CLIP image tower id/path (sd15: openai/clip-vit-base-patch32)."),
    seed: int = typer.Option(0, "--seed", help="tiny: seed of the random initialisation."),
    clip_text: str = typer.Option("auto", "--clip-text",
                                  help="CLIP text tower for predict's CLIP ensemble (clip_text_encoder/ + "
                                       "clip_tokenizer/): auto = the image tower's own when it is pretrained, none "
                                       "for a random image tower (a random text tower only adds noise); none; "
                                       "random (tests); or a CLIP model's hub id/folder."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the frozen parts (VAE, CLIP text and image towers, tokenizer, image processor), the SD scheduler
    and the U-Net/captioner configs of a preset; for a pretrained CLIP image tower also its CLIP text tower."""
    from ..components import write_components
    summary = write_components(preset, out, vae=vae, text_encoder=text_encoder, image_encoder=image_encoder, seed=seed,
                               clip_text=clip_text)
    for message in summary["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)
    emit({"command": "components", **summary}, as_json)


def precompute_cmd(
    data: str = typer.Option(..., "--data", help="Image shards: shard folder, WebDataset tar URL(s) or Hub dataset id."),
    components: Path = typer.Option(..., "--components", help="Components folder (imdd-models components)."),
    out: Path = typer.Option(..., "--out", help="Latent shard folder to write (resumed if it exists)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split (default and `all`: every split)."),
    where: Optional[str] = typer.Option(None, "--where", help="Filter, e.g. source=demo,label=defective."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per encoder batch."),
    shard_size: int = typer.Option(1024, "--shard-size", min=1, help="Samples per latent shard."),
    flip: bool = typer.Option(False, "--flip", help="Also store the horizontally flipped image's latent and "
                                                    "CLIP image embedding."),
    device: Optional[str] = DEVICE_OPT,
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32, fp16 or bf16: what the VAE and image tower "
                                                              "run in (default: bf16 on CUDA, fp32 on the CPU)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="DataLoader workers that decode images (default: cores - 1, "
                                               "at most 8; 0: in the main process). Same output for any number."),
    as_json: bool = JSON_OPT,
) -> None:
    """Encode every image once into latent shards (VAE latent mean, CLIP image embedding, caption tokens).
    Several processes (`accelerate launch -m imdd_models precompute ...`, `torchrun`) each write their own shards."""
    from contextlib import nullcontext

    from ..diffusion.precompute import precompute
    check_device(device)
    with (progress_bar("precompute") if _rank() == 0 else nullcontext(_NoBar())) as bar:
        summary = precompute(data, components, out, split=split, where=where, batch_size=batch_size,
                             shard_size=shard_size, flip=flip, device=device or _device(), dtype=dtype,
                             workers=workers, on_total=bar.total, on_advance=bar.add)
    if _rank() == 0:
        emit({"command": "precompute", **summary}, as_json)


def train_cmd(
    config: Optional[str] = typer.Option(None, "--config",
                                         help="tiny, small, sd15 or a YAML file (base: PRESET + overrides); "
                                              "default: the preset of the --components folder (tiny for tiny, "
                                              "small for small, else sd15)."),
    data: str = typer.Option(..., "--data", help="Latent shards (precompute) or image shards (encoded online)."),
    components: Path = typer.Option(..., "--components", help="Components folder (imdd-models components)."),
    out: Path = typer.Option(..., "--out", help="Model folder: diffusers pipeline + implicit_captioner/ + checkpoints/."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                            help="Stop after this step (default: the config's epochs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the initial weights, noise and data order "
                                                            "(default 0; on --resume the run's own)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split of --data (`all`: every split)."),
    where: Optional[str] = typer.Option(None, "--where", help="Filter, e.g. label=defective."),
    log_keys: bool = typer.Option(False, "--log-keys", help="Write the keys each rank trained on to OUT/seen/."),
    save_every: Optional[int] = typer.Option(None, "--save-every", min=1,
                                             help="Checkpoint every N optimizer steps (default: the config's "
                                                  "checkpoint_every)."),
    save_every_minutes: Optional[float] = typer.Option(None, "--save-every-minutes", min=0,
                                                       help="Also checkpoint after this many minutes since the last "
                                                            "one (default: the config's, 30; 0 = off)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train the text-conditioned U-Net from scratch with the implicit captioner (accelerate: 1..N GPUs).

    Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a checkpoint, says how to resume and exits with
    130 (SIGINT) or 143 (SIGTERM) after the --json line."""
    given = dict(locals())  # the options as given (a stopped run's resume command)
    import shlex
    from contextlib import nullcontext

    from ..diffusion.interrupts import exit_without_teardown, stop_exit_code
    from ..diffusion.train import train_diffusion

    def report(summary: dict) -> int:
        if summary.get("stopped"):
            summary["resume_command"] = command_line("train-diffusion", train_cmd,
                                                     {**given, "config": summary["config"]}, resume=True)
            summary["export_command"] = shlex.join(["imdd-models", "export", "--run", str(out), "--out", "EXPORT_DIR"])
            if _rank() == 0:
                err.print(f"[yellow]{summary['stopped']}[/yellow]: stopped after step {summary['steps']}; saved "
                          f"{summary['checkpoint']} (unet/, unet_ema/, implicit_captioner/ and the training state)",
                          highlight=False, soft_wrap=True)
                err.print(f"resume with: {summary['resume_command']}", highlight=False, soft_wrap=True)
                err.print(f"or export it: {summary['export_command']}", highlight=False, soft_wrap=True)
        if _rank() == 0 and summary.get("resumed_from") is not None and not summary.get("steps_this_run") \
                and not summary.get("stopped"):
            err.print(f"note: --resume: the run is already at step {summary['steps']} (--max-steps "
                      f"{summary['max_steps']}); nothing was trained", highlight=False)
        if _rank() == 0:
            emit({"command": "train-diffusion", **summary}, as_json)
        return stop_exit_code(summary.get("stopped"))

    def done(summary: dict) -> None:
        """Several processes: report and end the process before train_diffusion's frame is torn down (freeing
        the DDP reducer can hang in gloo's teardown; see diffusion.interrupts.exit_without_teardown)."""
        if summary["world_size"] > 1:
            exit_without_teardown(report(summary))

    with (progress_bar("train-diffusion") if _rank() == 0 else nullcontext(_NoBar())) as bar:
        def on_start(start: int, total: int) -> None:
            bar.total(total)
            bar.add(start)

        summary = train_diffusion(config, data, components, out, max_steps=max_steps, resume=resume, seed=seed,
                                  split=split, where=where, log_keys=log_keys, on_start=on_start,
                                  on_step=lambda step, loss: bar.advance(), save_every=save_every,
                                  save_every_minutes=save_every_minutes, on_done=done)
    code = report(summary)
    if code:
        raise typer.Exit(code)


def export_cmd(
    run: Path = typer.Option(..., "--run", help="A train-diffusion --out folder (its checkpoints/)."),
    out: Path = typer.Option(..., "--out", help="Folder to write: a StableDiffusionPipeline + implicit_captioner/."),
    step: Optional[int] = typer.Option(None, "--step", min=0, help="Checkpoint step (default: the newest)."),
    components: Optional[Path] = typer.Option(None, "--components",
                                              help="Components folder (default: the one the run recorded)."),
    raw: bool = typer.Option(False, "--raw", help="Export the raw U-Net and captioner instead of the EMA pair."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write a diffusers pipeline folder (EMA U-Net and EMA captioner by default) from any checkpoint of a run."""
    from ..diffusion.export import export_checkpoint
    summary = export_checkpoint(run, out, step=step, components=components, raw=raw)
    emit({"command": "export", **summary}, as_json)


def generate_cmd(
    model: Path = MODEL_OPT,
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text prompt."),
    image: Optional[Path] = typer.Option(None, "--image", help="Condition on this image via the implicit captioner."),
    n: int = typer.Option(4, "--n", min=1, help="Images to generate."),
    steps: int = STEPS_OPT,
    guidance: float = GUIDANCE_OPT,
    seed: int = SEED_OPT,
    out: Path = typer.Option(..., "--out", help="Folder for the images and grid.png."),
    device: Optional[str] = DEVICE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Generate images from a prompt, or from an image through the implicit captioner."""
    from ..diffusion.generate import generate
    if (prompt is None) == (image is None):
        raise RunError("give exactly one of --prompt and --image")
    check_device(device)
    err.print("generating ...")
    summary = generate(model, out, prompt=prompt, image=image, n=n, steps=steps, guidance=guidance, seed=seed,
                       device=device)
    emit({"command": "generate", **summary}, as_json)


def inpaint_cmd(
    model: Path = MODEL_OPT,
    image: Path = typer.Option(..., "--image", help="A normal image, any size."),
    mask: Path = typer.Option(..., "--mask", help="Where to paint the defect (white = defect)."),
    prompt: str = typer.Option(..., "--prompt", help="The defect, e.g. 'a scratch on a metal plate'."),
    steps: int = STEPS_OPT,
    guidance: float = GUIDANCE_OPT,
    seed: int = SEED_OPT,
    out: Path = typer.Option(..., "--out", help="Folder for inpainted.png."),
    device: Optional[str] = DEVICE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Paint a described defect into a normal image inside a mask; pixels away from the mask stay the input's."""
    from ..diffusion.inpaint import inpaint_defect
    check_device(device)
    err.print("inpainting ...")
    summary = inpaint_defect(model, image, mask, prompt, out, steps=steps, guidance=guidance, seed=seed, device=device)
    if summary.get("mask_from", "").startswith("luminance"):
        err.print(f"note: {mask}: the mask was taken from the {summary['mask_from']} (white = defect)",
                  markup=False)
    emit({"command": "inpaint-defect", **summary}, as_json)


def demo_cmd(
    out: Path = typer.Option(Path("imdd-workspace/models-demo"), "--out", help="Folder for every stage's output."),
    shards: Optional[Path] = typer.Option(None, "--shards",
                                          help="imdd-build demo shards (default imdd-workspace/demo-shards; "
                                               "built when missing)."),
    steps: int = typer.Option(150, "--steps", min=1, help="Training steps."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JSON_OPT,
) -> None:
    """Tiny components, precompute, a short training run, a generated grid and an inpainted defect (CPU minutes)."""
    from ..diffusion.demo import run_demo
    summary = run_demo(out, shards=shards, steps=steps, seed=seed, on_stage=lambda s: err.print(f"[bold]{s}[/bold]"))
    emit({"command": "demo", **summary}, as_json)


class _NoBar:
    """Progress for ranks other than 0: nothing (one bar per run)."""

    def total(self, n: int) -> None: ...

    def add(self, n: int) -> None: ...

    def advance(self, *_args) -> None: ...


def _device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _rank() -> int:
    import os
    return int(os.environ.get("RANK", "0"))


def register(app: typer.Typer) -> None:
    """Add the stage-1 commands to `app`."""
    for name, fn in (("components", components_cmd), ("precompute", precompute_cmd),
                     ("train-diffusion", train_cmd), ("export", export_cmd), ("generate", generate_cmd), ("inpaint-defect", inpaint_cmd),
                     ("demo", demo_cmd)):
        app.command(name)(run_level_errors(name)(fn))
