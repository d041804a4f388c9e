"""Evaluation commands: evaluate (a predictions folder against shards), evaluate-generation (FID/KID/IS)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imdd_build.console import Bar

from .common import JSON_OPT, RunError, check_out_folder, emit, err, progress_bar, run_level_errors

_SUMMARY = ("records", "predicted", "missing", "extra", "image_auroc", "pixel_auroc", "aupro", "iou", "map50",
            "map50_95", "accuracy", "miou")
_METRICS = ("image_auroc", "pixel_auroc", "aupro", "iou", "map50", "map50_95", "accuracy", "miou")


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)


def evaluate_cmd(
    predictions: Path = typer.Option(..., "--predictions",
                                     help="Predictions folder (predictions.jsonl, .npy anomaly maps, class maps)."),
    data: str = typer.Option(..., "--data", help="Shard folder, WebDataset tar URL(s) or Hub dataset id."),
    split: Optional[str] = typer.Option(None, "--split",
                                        help="Split to score ('all' for every split; default: the split predict "
                                             "recorded in meta.json, else test)."),
    where: Optional[str] = typer.Option(None, "--where", help="Only records matching FIELD=VALUE[,...]."),
    classes_seen: Optional[str] = typer.Option(None, "--classes-seen",
                                               help="Seen classes a,b: adds seen/unseen results and mIoU means "
                                                    "(others unseen)."),
    class_split: Optional[Path] = typer.Option(None, "--class-split",
                                               help="Class split file (base = seen, novel = unseen)."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the result as Markdown tables."),
    breakdown: bool = typer.Option(True, "--breakdown/--no-breakdown", help="Per-source and per-class results."),
    allow_extra: bool = typer.Option(False, "--allow-extra",
                                     help="Count predictions for keys outside the split instead of failing."),
    strict: bool = typer.Option(False, "--strict", help="Fail when any record of the split has no prediction "
                                                        "(the default now; kept for old scripts)."),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="Score although records of the split have no prediction (the report "
                                            "says how many, beside every metric); without it that is an error."),
    pixel_bins: int = typer.Option(0, "--pixel-bins", min=0,
                                   help="0: exact pixel curves; N >= 2: N thresholds, constant memory."),
    as_json: bool = JSON_OPT,
) -> None:
    """Score a predictions folder against a split of IMDD shards: image/pixel AUROC, AUPRO, IoU, box mAP, accuracy,
    per-class IoU and mIoU."""
    from ..evaluation import evaluate, markdown_report
    from ..evaluation.run import missing_message
    if pixel_bins == 1:
        raise RunError("--pixel-bins: give 0 (exact) or at least 2 thresholds")
    if markdown is not None:  # checked before the scoring, not after it
        if markdown.is_dir():
            raise RunError(f"--markdown {markdown}: a folder; give a file path")
        check_out_folder(markdown.parent, f"--markdown {markdown}: its folder")
    with progress_bar("read records") as bar:
        groups = Bar(bar.progress, "score groups")
        result = evaluate(predictions, data, split=... if split is None else (None if split == "all" else split),
                          where=where, classes_seen=classes_seen, class_split=class_split, allow_extra=allow_extra,
                          breakdown=breakdown, pixel_bins=pixel_bins, strict=True,
                          allow_missing=allow_missing and not strict, on_record=bar.advance, on_group=groups.advance)
    if result["split_from"] == "meta.json":
        err.print(f"split: {result['split'] or 'all'} (recorded by predict in meta.json)", highlight=False)
    if result["missing"]:
        _warn(missing_message(result))
    for message in result.get("warnings", []):
        _warn(message)
    if result["extra"]:
        _warn(f"{result['extra']} prediction(s) for keys outside the split were ignored "
              f"(first: {result['extra_examples'][0]})")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(markdown_report(result), encoding="utf-8")
        result["markdown"] = str(markdown)
    emit(result if as_json else {"command": "evaluate", **_summary(result),
                                 **({"markdown": result["markdown"]} if markdown else {})}, as_json)


def _summary(result: dict) -> dict:
    """The table without --json; with missing records every metric says how many beside its value."""
    out = {k: result[k] for k in _SUMMARY}
    if result["missing"]:
        for metric in _METRICS:
            value = "–" if out[metric] is None else f"{out[metric]:.4f}"
            out[metric] = f"{value} ({result['missing']} of {result['records']} records missing)"
    return out


def evaluate_generation_cmd(
    real: str = typer.Option(..., "--real", help="Real images: shard folder, tar URL(s) or Hub dataset id."),
    generated: Path = typer.Option(..., "--generated", help="Folder of generated images (png/jpg/webp, recursive)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split of the real shards (default: all)."),
    where: Optional[str] = typer.Option(None, "--where", help="Only real records matching FIELD=VALUE[,...]."),
    feature_weights: Optional[Path] = typer.Option(
        None, "--feature-weights",
        help="Required (nothing is downloaded; the machine may be offline): a TorchScript or torch.export feature "
             "network file, e.g. NVlabs' Inception inception-2015-12-05.pt."),
    feature_output: str = typer.Option("auto", "--feature-output",
                                       help="What net(x) returns, for IS: logits, probs, or auto (rows >= 0 "
                                            "summing to 1 are probabilities)."),
    image_size: int = typer.Option(299, "--image-size", help="Images are resized to this square size."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2, help="KID subset size (capped at N)."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", min=1),
    is_splits: int = typer.Option(10, "--is-splits", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of KID's subsets and IS's splits."),
    as_json: bool = JSON_OPT,
) -> None:
    """FID, KID and IS of generated images against real shard images (torchmetrics, your feature network)."""
    from ..evaluation.generation import evaluate_generation
    if feature_weights is None:
        raise RunError("--feature-weights is required: nothing is downloaded (this works offline); give a "
                       "TorchScript or .pt2 feature network file, e.g. inception-2015-12-05.pt (see README, Evaluate)")
    if feature_output not in ("auto", "logits", "probs"):
        raise RunError(f"--feature-output {feature_output!r}: choose auto, logits or probs")
    with progress_bar("extract features") as bar:
        result = evaluate_generation(real, generated, feature_weights, split=split, where=where,
                                     image_size=image_size, batch_size=batch_size, kid_subset_size=kid_subset_size,
                                     kid_subsets=kid_subsets, is_splits=is_splits, seed=seed,
                                     feature_output=feature_output, on_image=bar.advance)
    for message in result["warnings"]:
        _warn(message)
    emit(result, as_json)


def register(app: typer.Typer) -> None:
    """Add the evaluation commands to `app`."""
    app.command("evaluate")(run_level_errors("evaluate")(evaluate_cmd))
    app.command("evaluate-generation")(run_level_errors("evaluate-generation")(evaluate_generation_cmd))
