"""Stage-2 commands: train-seg (the open-vocabulary mask generator on frozen diffusion features) and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..diffusion.interrupts import stop_exit_code
from .common import JSON_OPT, RunError, command_line, emit, err, progress_bar, run_level_errors


def train_seg_cmd(
    diffusion: Path = typer.Option(..., "--diffusion", help="Stage-1 model folder (or any SD-1.x diffusers folder)."),
    data: str = typer.Option(..., "--data", help="Shard folder, WebDataset tar URL(s) or Hub dataset id."),
    config: str = typer.Option("paper", "--config", help="Mask generator preset: paper (44.0M), small (CPU "
                                "real-data runs), tiny (CPU tests), or a YAML file (base: PRESET + fields)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write (seg_config.json, model.safetensors)."),
    classes: str = typer.Option("all", "--classes",
                                help="Trained (base) classes: all, a,b,... or a class split file (others unseen, "
                                     "ignored in the losses). A name without training samples is an error."),
    shots: Optional[int] = typer.Option(None, "--shots", help="Exactly K labelled samples per class (seeded)."),
    normal_shots: Optional[int] = typer.Option(None, "--normal-shots", help="Normal records chosen with --shots "
                                               "(default: as many as --shots; 0 = none)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation, the batch order and --shots."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in --out."),
    split: Optional[str] = typer.Option("train", "--split", help="Split to train on (all or '' for every split)."),
    where: Optional[str] = typer.Option(None, "--where", help="Record filter, e.g. source=mvtec,domain=metal."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (preset default)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (preset default)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs when --max-steps is not given."),
    timestep: int = typer.Option(50, "--timestep", help="Diffusion timestep of the feature pass."),
    save_every: int = typer.Option(100, "--save-every", help="Checkpoint every N steps (and at the end)."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16 (GPU)."),
    cache_features: Optional[Path] = typer.Option(None, "--cache-features",
                                                  help="Folder caching the frozen features of the training set."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained",
                                         help="Accept --max-steps 0: write the initial weights (a 0-step baseline)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Frozen backbone dtype: auto (bfloat16/float16 on a "
                                        "GPU, float32 on the CPU), float32, bfloat16 or float16."),
    num_workers: int = typer.Option(2, "--num-workers", help="DataLoader workers (decode, augment, targets, "
                                    "preprocessing); 0 = in the main process."),
    augment: str = typer.Option("on", "--augment", help="on (the preset's flip + scale jitter), flip, or off."),
    schedule_steps: Optional[int] = typer.Option(None, "--schedule-steps", help="Horizon of the LR step decay "
                                                 "(default: epochs x steps per epoch; --max-steps only stops early)."),
    eval_every: int = typer.Option(0, "--eval-every", help="Every N steps score the held-out --eval-split (pixel "
                                   "AUROC) and keep the best step's weights as the model; 0 = off (the last step)."),
    eval_split: str = typer.Option("validation", "--eval-split", help="Held-out split scored by --eval-every."),
    eval_limit: int = typer.Option(512, "--eval-limit", help="At most N held-out records (features kept in memory)."),
    calibrate: str = typer.Option("auto", "--calibrate", help="After training, choose predict's image threshold "
                                  "on this split (calibration.json): auto (validation, when --data has it), a "
                                  "split name, or off."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train the open-vocabulary mask generator on frozen diffusion features."""
    given = dict(locals())  # the options as given (a stopped run's resume command)
    from ..segmentation.train import TrainOptions, check_options, train_seg
    opts = TrainOptions(diffusion=diffusion, data=data, config=config, out=out, classes=classes, shots=shots,
                        normal_shots=normal_shots, max_steps=max_steps, seed=seed, resume=resume,
                        split=None if (split or "").strip().lower() in ("", "all") else split, where=where,
                        batch_size=batch_size, lr=lr, epochs=epochs, timestep=timestep, save_every=save_every,
                        mixed_precision=mixed_precision, cache_features=cache_features,
                        allow_untrained=allow_untrained, device=device, dtype=dtype, num_workers=num_workers,
                        augment=augment, schedule_steps=schedule_steps, eval_every=eval_every,
                        eval_split=eval_split, eval_limit=eval_limit)
    check_options(opts)
    with progress_bar("train-seg") as bar:
        def step(done: int, total: int) -> None:
            bar.total(total)
            bar.advance()
        summary = train_seg(opts, progress=step)
    import os
    if int(os.environ.get("RANK", "0")) != 0:  # several processes: rank 0 calibrates and reports for the run
        return  # (exit 0 also when stopped: a launcher would kill rank 0 on another rank's 130 mid-report)
    if opts.resume and not summary.get("resumed"):  # as diffusers' --resume_from_checkpoint with none saved
        err.print(f"note: --resume: nothing saved in {out} yet, so this was a new run", highlight=False)
    if (summary.get("eval") or {}).get("skipped"):  # --eval-every asked for, nothing to select a step by
        err.print(f"[yellow]warning:[/yellow] {summary['eval']['skipped']}; the model is the last step's",
                  markup=True, highlight=False)
    if summary.get("resumed") and not summary.get("samples_seen") and not summary.get("stopped"):
        err.print(f"note: --resume: the run in {out} is already at step {summary['steps']}; nothing to train "
                  f"(raise --max-steps to continue it)", highlight=False)
    if summary.get("stopped"):  # Ctrl-C or SIGTERM: the steps done are saved; no calibration of a cut-short run
        summary["resume_command"] = command_line("train-seg", train_seg_cmd, given, resume=True)
        err.print(f"[yellow]{summary['stopped']}[/yellow]: stopped after step {summary['steps']}; saved in {out}",
                  highlight=False, soft_wrap=True)
        err.print(f"resume with: {summary['resume_command']}", highlight=False, soft_wrap=True)
        emit({"command": "train-seg", **summary}, as_json)
        raise typer.Exit(stop_exit_code(summary["stopped"]))
    if calibrate.strip().lower() == "off":
        summary["calibration"] = {"skipped": "--calibrate off"}
    elif summary.get("steps") is not None:
        from ..segmentation.calibrate import calibrate_after_training
        with progress_bar("calibrate") as bar:
            summary["calibration"] = calibrate_after_training(opts, calibrate, progress=bar.advance)
        if summary["calibration"].get("warning"):
            err.print(f"[yellow]warning:[/yellow] {summary['calibration']['warning']}", markup=True, highlight=False)
    emit({"command": "train-seg", **summary}, as_json)


def calibrate_cmd(
    model: Path = typer.Option(..., "--model", help="Folder written by train-seg."),
    data: str = typer.Option(..., "--data", help="Shard source with labelled held-out records."),
    split: str = typer.Option("validation", "--split", help="Split to calibrate on (never the training split)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Names predict will look for (default: the "
                                          "trained classes)."),
    objective: str = typer.Option("f1", "--objective", help="f1 (of 'defective', as anomalib) or accuracy."),
    where: Optional[str] = typer.Option(None, "--where", help="Record filter for --data."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward pass."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use at most N records."),
    no_clip: bool = typer.Option(False, "--no-clip", help="Calibrate the learned classifier alone (as predict "
                                 "--no-clip)."),
    diffusion: Optional[Path] = typer.Option(None, "--diffusion", help="Diffusion folder, if moved since training."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Frozen backbone dtype (as predict)."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Saved CLIP model (as predict --clip)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Choose predict's image threshold on held-out records; writes calibration.json into the model folder."""
    from ..segmentation.calibrate import calibrate
    with progress_bar("calibrate") as bar:
        summary = calibrate(model, data, split, classes, objective, where, batch_size, limit, use_clip=not no_clip,
                            diffusion=diffusion, device=device, dtype=dtype, clip_text=clip, progress=bar.advance)
    for message in summary["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)
    emit({"command": "calibrate", **summary}, as_json)


def predict_cmd(
    images: Optional[list[Path]] = typer.Argument(None, help="Image files (any size; letterboxed to 512)."),
    model: Path = typer.Option(..., "--model", help="Folder written by train-seg."),
    classes: str = typer.Option(..., "--classes", help="Names to look for (\"scratch,crack,dent\") or a split file."),
    out: Path = typer.Option(..., "--out", help="Predictions folder (predictions.jsonl, maps/, overlays/)."),
    data: Optional[str] = typer.Option(None, "--data", help="Shard source instead of image files."),
    split: Optional[str] = typer.Option(None, "--split", help="Split of --data."),
    where: Optional[str] = typer.Option(None, "--where", help="Record filter for --data."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Map value from which a pixel/image is "
                                              "defective (default: the model's calibration.json, else 0.5)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward pass."),
    diffusion: Optional[Path] = typer.Option(None, "--diffusion", help="Diffusion folder, if moved since training."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Stop after N images."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace predictions in --out written by another model or other options."),
    clip_alpha: Optional[float] = typer.Option(None, "--clip-alpha", help="CLIP's ensemble weight for trained "
                                               "names, 0..1 (the model's config; 0.35 as ODISE)."),
    clip_beta: Optional[float] = typer.Option(None, "--clip-beta", help="CLIP's ensemble weight for names never "
                                              "trained on, 0..1 (the model's config; 0.65 as ODISE)."),
    no_clip: bool = typer.Option(False, "--no-clip", help="The learned classifier alone (no CLIP ensemble)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Frozen backbone dtype: auto (bfloat16/float16 on a "
                                        "GPU, float32 on the CPU), float32, bfloat16 or float16."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Saved CLIP model matching the stage-1 image tower "
                                        "(its text tower classifies regions; default DIFFUSION/clip_text_encoder)."),
    writers: int = typer.Option(2, "--writers", help="Threads writing maps, overlays and boxes while the model "
                                "runs the next batch (0 = in the main thread; the folder is the same either way)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Segment, detect and classify the named defects (any names, also ones never trained on)."""
    given = dict(locals())  # the options as given (a stopped run's rerun command)
    check_predict_options(batch_size, limit, threshold, clip_alpha, clip_beta)
    folders = [str(p) for p in images or [] if p.is_dir()]
    if folders:
        raise RunError(f"{folders[0]}: a folder; give its image files (e.g. {folders[0]}/*.png)")
    missing = [str(p) for p in images or [] if not p.is_file()]
    if missing:
        raise RunError(f"{missing[0]}: no such image file")
    from ..segmentation.predict import predict
    with progress_bar("predict") as bar:
        summary = predict(model, classes, out, data=data, split=split, images=list(images or []), where=where,
                          threshold=threshold, batch_size=batch_size, diffusion=diffusion, limit=limit,
                          progress=bar.advance, overwrite=overwrite, clip_alpha=clip_alpha, clip_beta=clip_beta,
                          use_clip=not no_clip, clip_text=clip, device=device, dtype=dtype, writers=writers)
    for message in summary["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)
    if summary.get("stopped"):  # every finished image is in --out; the same command predicts only the rest
        summary["resume_command"] = command_line("predict", predict_cmd, given)
        err.print(f"[yellow]{summary['stopped']}[/yellow]: stopped after {summary['images']} image(s) this run, all "
                  f"written to {out}; run the same command to predict the rest", highlight=False, soft_wrap=True)
    emit({"command": "predict", **summary}, as_json)
    if summary.get("stopped"):
        raise typer.Exit(stop_exit_code(summary["stopped"]))


def check_predict_options(batch_size: int, limit: int | None, threshold: float, clip_alpha: float | None,
                          clip_beta: float | None) -> None:
    """One error line for an out-of-range numeric option of `predict` (nothing read or written yet)."""
    import math
    if batch_size < 1:
        raise RunError(f"--batch-size must be >= 1 (got {batch_size})")
    if limit is not None and limit < 1:
        raise RunError(f"--limit must be >= 1 (got {limit})")
    for name, value in (("--threshold", threshold), ("--clip-alpha", clip_alpha), ("--clip-beta", clip_beta)):
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise RunError(f"{name} must be between 0 and 1 (got {value})")


def register(app: typer.Typer) -> None:
    """Add the stage-2 commands to `app`."""
    app.command("train-seg")(run_level_errors("train-seg")(train_seg_cmd))
    app.command("predict")(run_level_errors("predict")(predict_cmd))
    app.command("calibrate")(run_level_errors("calibrate")(calibrate_cmd))
