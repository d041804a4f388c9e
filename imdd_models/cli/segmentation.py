"""Stage-2 commands: train-seg (the open-vocabulary mask generator on frozen diffusion features) and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import JSON_OPT, RunError, emit, progress_bar, run_level_errors


def train_seg_cmd(
    diffusion: Path = typer.Option(..., "--diffusion", help="Stage-1 model folder (or any SD-1.x diffusers folder)."),
    data: str = typer.Option(..., "--data", help="Shard folder, WebDataset tar URL(s) or Hub dataset id."),
    config: str = typer.Option("paper", "--config", help="Mask generator preset: paper (~45M) or tiny (CPU tests)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (seg_config.json, model.safetensors)."),
    classes: str = typer.Option("all", "--classes",
                                help="Trained (base) classes: all, a,b,... or a class split file (others unseen)."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Exactly K labelled samples per class (seeded)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation, the batch order and --shots."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    split: Optional[str] = typer.Option("train", "--split", help="Split to train on ('' for every split)."),
    where: Optional[str] = typer.Option(None, "--where", help="Record filter, e.g. source=mvtec,domain=metal."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (preset default)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (preset default)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs when --max-steps is not given."),
    timestep: int = typer.Option(50, "--timestep", help="Diffusion timestep of the feature pass."),
    save_every: int = typer.Option(100, "--save-every", help="Checkpoint every N steps (and at the end)."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16 (GPU)."),
    cache_features: Optional[Path] = typer.Option(None, "--cache-features",
                                                  help="Folder caching the frozen features of the training set."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Frozen backbone dtype: auto (bfloat16/float16 on a "
                                        "GPU, float32 on the CPU), float32, bfloat16 or float16."),
    num_workers: int = typer.Option(2, "--num-workers", help="DataLoader workers (decode, augment, targets, "
                                    "preprocessing); 0 = in the main process."),
    augment: str = typer.Option("on", "--augment", help="on (the preset's flip + scale jitter), flip, or off."),
    schedule_steps: Optional[int] = typer.Option(None, "--schedule-steps", help="Horizon of the LR step decay "
                                                 "(default: epochs x steps per epoch; --max-steps only stops early)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train the open-vocabulary mask generator on frozen diffusion features."""
    from ..segmentation.train import TrainOptions, train_seg
    if shots is not None and shots < 1:
        raise RunError(f"--shots must be >= 1 (got {shots})")
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise RunError(f"--mixed-precision {mixed_precision!r}: choose no, fp16 or bf16")
    opts = TrainOptions(diffusion=diffusion, data=data, config=config, out=out, classes=classes, shots=shots,
                        max_steps=max_steps, seed=seed, resume=resume, split=split or None, where=where,
                        batch_size=batch_size, lr=lr, epochs=epochs, timestep=timestep, save_every=save_every,
                        mixed_precision=mixed_precision, cache_features=cache_features, device=device,
                        dtype=dtype, num_workers=num_workers, augment=augment, schedule_steps=schedule_steps)
    with progress_bar("train-seg") as bar:
        def step(done: int, total: int) -> None:
            bar.total(total)
            bar.advance()
        summary = train_seg(opts, progress=step)
    emit({"command": "train-seg", **summary}, as_json)


def predict_cmd(
    images: Optional[list[Path]] = typer.Argument(None, help="Image files (any size; letterboxed to 512)."),
    model: Path = typer.Option(..., "--model", help="Folder written by train-seg."),
    classes: str = typer.Option(..., "--classes", help="Names to look for (\"scratch,crack,dent\") or a split file."),
    out: Path = typer.Option(..., "--out", help="Predictions folder (predictions.jsonl, maps/, overlays/)."),
    data: Optional[str] = typer.Option(None, "--data", help="Shard source instead of image files."),
    split: Optional[str] = typer.Option(None, "--split", help="Split of --data."),
    where: Optional[str] = typer.Option(None, "--where", help="Record filter for --data."),
    threshold: float = typer.Option(0.5, "--threshold", help="Map value from which a pixel/image is defective."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward pass."),
    diffusion: Optional[Path] = typer.Option(None, "--diffusion", help="Diffusion folder, if moved since training."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Stop after N images."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Frozen backbone dtype: auto (bfloat16/float16 on a "
                                        "GPU, float32 on the CPU), float32, bfloat16 or float16."),
    as_json: bool = JSON_OPT,
) -> None:
    """Segment, detect and classify the named defects (any names, also ones never trained on)."""
    from ..segmentation.predict import predict
    missing = [str(p) for p in images or [] if not p.is_file()]
    if missing:
        raise RunError(f"{missing[0]}: no such image file")
    with progress_bar("predict") as bar:
        summary = predict(model, classes, out, data=data, split=split, images=list(images or []), where=where,
                          threshold=threshold, batch_size=batch_size, diffusion=diffusion, limit=limit,
                          progress=bar.advance, device=device, dtype=dtype)
    emit({"command": "predict", **summary}, as_json)


def register(app: typer.Typer) -> None:
    """Add the stage-2 commands to `app`."""
    app.command("train-seg")(run_level_errors("train-seg")(train_seg_cmd))
    app.command("predict")(run_level_errors("predict")(predict_cmd))
