"""Publishing commands (push-to-hub, dedupe, stats); added to the app by `register(app)`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..console import emit, err, progress_bar
from ..dedupe import DEFAULT_RADIUS, LEAKAGE_RULE, find_duplicates, save_groups
from ..seeded_splits import SEEDED_SPLIT_RULE, split_message
from ..errors import RunError, need_extra
from ..executor import default_workers
from .common import JSON_OPT, run_level_errors, workspace

DEFAULT_REPO_NAME = "imdd-1m"  # what the card's `load_dataset("imdd-1m")` and `imdd-build shard` use


def _split_list(value: Optional[str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in (value or "").split(",") if s.strip())


def push_to_hub_cmd(
    ctx: typer.Context,
    repo_id: str = typer.Argument(DEFAULT_REPO_NAME, help="The dataset repository, e.g. my-org/imdd-1m; a bare "
                                                          "name goes under your user (default: imdd-1m)."),
    workers: int = typer.Option(default_workers(), "--workers", min=1,
                                help="Shard-writing and image-hashing processes."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to (created when missing)."),
    sources: Optional[str] = typer.Option(None, "--sources", help="Comma-separated source ids (default: all)."),
    allow_noncommercial: bool = typer.Option(False, "--allow-noncommercial",
                                             help="Include non-commercial/research-only sources (card says so, "
                                                  "repo gated)."),
    with_webdataset: bool = typer.Option(False, "--with-webdataset", help="Also upload WebDataset tar shards."),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help="Write the exact repo folder here; upload nothing."),
    radius: int = typer.Option(DEFAULT_RADIUS, "--radius",
                               help="Near-duplicate Hamming radius (bits of the 64-bit pHash)."),
    leakage: str = typer.Option("drop-train", "--leakage", help=f"drop-train or keep. {LEAKAGE_RULE}"),
    seeded_splits: str = typer.Option("group", "--seeded-splits", help=f"group or sample. {SEEDED_SPLIT_RULE}"),
    max_shard_size: str = typer.Option("450MB", "--max-shard-size", help="Per Parquet file (the Hub wants < 500MB)."),
    files_per_commit: int = typer.Option(100, "--files-per-commit", min=1, max=1000,
                                         help="Data files per commit (the Hub rate-limits commits per hour)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Build the Hub dataset repo (Parquet per source, card, plots) and upload it resumably."""
    from ..publish import PublishOptions, build_repo, check_folder, check_push, resolve_policy

    repo_id, token, shard_bytes = check_push(repo_id, leakage, radius, max_shard_size, upload=dry_run is None,
                                             seeded_splits=seeded_splits)
    ws = workspace(ctx)
    out = dry_run or ws.root / "publish" / repo_id.replace("/", "__")
    options = PublishOptions(repo_id=repo_id, sources=_split_list(sources), private=private,
                             allow_noncommercial=allow_noncommercial, with_webdataset=with_webdataset,
                             radius=radius, leakage=leakage, max_shard_bytes=shard_bytes, workers=workers,
                             seeded_splits=seeded_splits)
    check_folder(out)
    with ws.catalog() as catalog:
        resolve_policy(catalog, options)  # refusals before any progress output or work
    with ws.catalog() as catalog, progress_bar("prepare repo") as bar:
        summary = build_repo(catalog, ws.store(), out, options, on_stage=lambda s: err.print(f"[dim]{s}[/dim]"),
                             on_total=bar.total, on_record=bar.advance)
    summary = {"command": "push-to-hub", "repo_id": repo_id, "dry_run": dry_run is not None, **summary}
    if dry_run is not None:
        emit(summary, as_json)
        return
    from ..hub import HubError, Uploader

    with progress_bar(f"upload {repo_id}") as bar:
        def progress(done: int, total: int) -> None:
            bar.total(total)
            bar.progress.update(bar.task, completed=done)
        uploader = Uploader(repo_id, token, revision=revision, on_progress=progress, batch_files=files_per_commit,
                            log=lambda m: err.print(f"[yellow]{escape(m)}[/yellow]"))
        try:
            report = uploader.push(out, private=private, gated=summary["gated"],
                                   commit_message="imdd-build push-to-hub")
        except HubError as exc:
            message = f"{exc}; rerun the same command to resume (committed files are not sent again)"
            err.print(f"[red]error:[/red] {escape(message)}")
            if as_json:
                sys.stdout.write(json.dumps({"command": "push-to-hub", "error": message,
                                             "upload": uploader.report.as_dict()}) + "\n")
            raise typer.Exit(1) from None
    summary["upload"] = report.as_dict()
    emit(summary, as_json)


def dedupe_cmd(
    ctx: typer.Context,
    radius: int = typer.Option(DEFAULT_RADIUS, "--radius",
                               help="Near duplicates: Hamming distance of the 64-bit pHash, in bits."),
    sources: Optional[str] = typer.Option(None, "--sources", help="Comma-separated source ids (default: all)."),
    leakage: str = typer.Option("drop-train", "--leakage",
                                help=f"drop-train or keep (what shard and push-to-hub do). {LEAKAGE_RULE}"),
    seeded_splits: str = typer.Option("group", "--seeded-splits",
                                      help=f"group or sample (what shard and push-to-hub do). {SEEDED_SPLIT_RULE}"),
    workers: int = typer.Option(default_workers(), "--workers", min=1,
                                help="Processes decoding images not hashed yet, and search threads (same groups "
                                     "whatever N)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Find exact and near-duplicate images across sources, and leakage between splits."""
    ws = workspace(ctx)
    with ws.catalog() as catalog, progress_bar("hash images") as bar:
        result = find_duplicates(catalog, ws.store(), radius=radius, sources=_split_list(sources),
                                 leakage=leakage, workers=workers, on_total=bar.total, on_record=bar.advance,
                                 seeded_splits=seeded_splits)
        save_groups(catalog, result)
    message = split_message(result)
    if message:
        err.print(message, markup=False)
    if not as_json:
        for g in result.groups:
            flag = " LEAKAGE" if g.leakage else ""
            err.print(f"group {g.id} ({g.kind}{flag}): " + ", ".join(f"{m.key} [{m.split}]" for m in g.members)
                      + (f"; drop {', '.join(g.dropped)}" if g.dropped else ""), markup=False)
    emit({"command": "dedupe", **result.summary(), "groups": [g.as_dict() for g in result.groups]}, as_json)


def stats_cmd(
    ctx: typer.Context,
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report with plots."),
    sources: Optional[str] = typer.Option(None, "--sources", help="Comma-separated source ids (default: all)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Counts per source, domain, defect type, label, caption status; plots with --html."""
    from ..stats import collect_stats, draw_figures, html_report, public_stats, stats_rows

    ws = workspace(ctx)
    with ws.catalog() as catalog:
        stats = collect_stats(stats_rows(catalog, _split_list(sources)))
        if not stats["images"]:
            raise RunError("no records to report on: ingest something first")
        summary = {"command": "stats", **public_stats(stats)}
        if html is not None:
            need_extra("matplotlib")
            figures = draw_figures(stats, ws.store(), catalog.get)
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(html_report(stats, figures))
            summary.update(html=str(html), figures=sorted(figures))
    if not as_json:
        summary.pop("samples", None)
    emit(summary, as_json)


def register(app: typer.Typer) -> None:
    """Add `push-to-hub`, `dedupe` and `stats` to `app`."""
    app.command("push-to-hub")(run_level_errors("push-to-hub")(push_to_hub_cmd))
    app.command("dedupe")(run_level_errors("dedupe")(dedupe_cmd))
    app.command("stats")(run_level_errors("stats")(stats_cmd))
