"""`shard`, `demo`, `status`, `quarantine` and `version`: the catalog's outputs and counts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from ..console import emit
from ..dedupe import DEFAULT_RADIUS, LEAKAGE_RULE
from ..seeded_splits import SEEDED_SPLIT_RULE
from ..errors import RunError
from ..executor import default_workers
from ..pipeline import run_demo, shard_workspace
from ..shard import ShardOptions, parse_size
from .common import JSON_OPT, run_level_errors, workspace


def shard_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(Path("imdd-1m"), "--out",
                             help="Output folder (Parquet under data/, tars under webdataset/); default ./imdd-1m, "
                                  "so `load_dataset(\"imdd-1m\")` works in the current folder."),
    fmt: str = typer.Option("parquet,webdataset", "--format", help="Comma-separated: parquet, webdataset."),
    max_shard_size: str = typer.Option("500MB", "--max-shard-size", help="Per shard, e.g. 500MB, 1GB."),
    image_ext: str = typer.Option("auto", "--image-ext",
                                  help="WebDataset image member: auto (the stored bytes; .png when every image is "
                                       "PNG, else .jpg), or jpg / png (transcode every image to it)."),
    order: str = typer.Option("shuffle", "--order", help="shuffle (seeded, deterministic) or key."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffled order."),
    source: list[str] = typer.Option([], "--source", help="Only these sources (repeatable)."),
    workers: int = typer.Option(default_workers(), "--workers", min=1,
                                help="Shards written in parallel processes (same bytes whatever N)."),
    leakage: str = typer.Option("drop-train", "--leakage",
                                help=f"drop-train or keep, as push-to-hub. {LEAKAGE_RULE}"),
    radius: int = typer.Option(DEFAULT_RADIUS, "--radius", help="Near-duplicate Hamming radius (pHash bits)."),
    seeded_splits: str = typer.Option("group", "--seeded-splits",
                                      help=f"group or sample, as push-to-hub. {SEEDED_SPLIT_RULE}"),
    as_json: bool = JSON_OPT,
) -> None:
    """Write deterministic Parquet + WebDataset shards, manifest.json and README.md."""
    if order not in ("shuffle", "key"):
        raise RunError(f"invalid --order {order!r} (shuffle or key)")
    options = ShardOptions(out=out, formats=tuple(f.strip() for f in fmt.split(",") if f.strip()),
                           max_shard_bytes=parse_size(max_shard_size), image_ext=image_ext, order=order,
                           seed=seed, sources=tuple(source), workers=workers)
    emit(shard_workspace(workspace(ctx), options, radius, leakage, seeded_splits), as_json)


def demo_cmd(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(None, "--out", help="Shard folder (default <workspace>/demo-shards)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated data."),
    workers: int = typer.Option(default_workers(), "--workers", min=1, help="Worker processes."),
    as_json: bool = JSON_OPT,
) -> None:
    """Generate the built-in demo data and run ingest -> caption -> shard on it (no downloads)."""
    emit(run_demo(workspace(ctx), out, seed, workers), as_json)


def status_cmd(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """Counts in the catalog: by source, split, label and caption status."""
    ws = workspace(ctx)
    with ws.catalog() as catalog:
        summary = {"command": "status", "workspace": str(ws.root), "records": catalog.count(),
                   "by_source": catalog.counts_by("source"), "by_split": catalog.counts_by("split"),
                   "by_label": catalog.counts_by("label"),
                   "by_caption_status": catalog.counts_by("caption_status"),
                   "quarantined": len(catalog.quarantined())}
    emit(summary, as_json)


def quarantine_cmd(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, "--source", help="Only this source."),
    as_json: bool = JSON_OPT,
) -> None:
    """List quarantined files with the reason."""
    with workspace(ctx).catalog() as catalog:
        items = catalog.quarantined(source)
    emit({"command": "quarantine", "count": len(items), "items": [q.model_dump() for q in items]}, as_json)


def version_cmd(as_json: bool = JSON_OPT) -> None:
    """Print the version."""
    emit({"command": "version", "version": __version__}, as_json)


def register(app: typer.Typer) -> None:
    """Add `shard`, `demo`, `status`, `quarantine` and `version` to `app`."""
    app.command("shard")(run_level_errors("shard")(shard_cmd))
    app.command("demo")(run_level_errors("demo")(demo_cmd))
    app.command("status")(run_level_errors("status")(status_cmd))
    app.command("quarantine")(run_level_errors("quarantine")(quarantine_cmd))
    app.command("version")(version_cmd)
