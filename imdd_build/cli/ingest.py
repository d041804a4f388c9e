"""`ingest`: one source (a registered id or a generic adapter) or `all` sources of a roots file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
import yaml

from ..console import emit, emit_rows
from ..executor import default_workers, make_executor
from ..pipeline import ingest_all, ingest_source
from ..roots import load_label_map
from ..source_entry import source_entry
from ..sources import RootError
from .common import JSON_OPT, run_level_errors, workspace


class ResizeMode(str, Enum):
    letterbox = "letterbox"
    stretch = "stretch"
    crop = "crop"
    tile = "tile"


def _parse_opts(pairs: list[str]) -> dict:
    """`--opt key=value` pairs into adapter options (values parsed as YAML scalars: 1, true, a,b)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RootError(f"--opt {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else ""
    return out


def ingest_cmd(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="Source id from sources.yaml (mvtec, visa, ...), a generic adapter "
                                           "(folder, coco, voc, yolo, mvtec_like, csv), or `all` with --roots."),
    root: Optional[Path] = typer.Option(None, "--root", help="The folder (or file) the official archive unpacks to."),
    roots: Optional[Path] = typer.Option(None, "--roots", help="With `all`: YAML of source id -> root."),
    resize_mode: Optional[ResizeMode] = typer.Option(
        None, "--resize-mode", help="letterbox (keep aspect, pad), stretch, crop (moves to keep the defect, else "
                                    "letterboxes) or tile (strips cut into square windows); default: the source's "
                                    "resize_mode in sources.yaml, else letterbox."),
    tile_aspect: float = typer.Option(2.0, "--tile-aspect", min=1.0,
                                      help="tile: long/short side ratio above which an image is cut into windows."),
    tile_overlap: float = typer.Option(0.25, "--tile-overlap", min=0.0, max=0.9,
                                       help="tile: least share of a window its neighbour overlaps."),
    jpeg_quality: int = typer.Option(95, "--jpeg-quality", min=1, max=100, help="Quality for JPEG sources."),
    max_pixels: int = typer.Option(150_000_000, "--max-pixels", help="Larger images are quarantined as bombs."),
    workers: int = typer.Option(default_workers(), "--workers", min=1, help="Worker processes."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N samples."),
    category: list[str] = typer.Option([], "--category", help="Only these products/categories (repeatable)."),
    commit_every: int = typer.Option(256, "--commit-every", min=1, help="Records per catalog transaction."),
    license: Optional[str] = typer.Option(None, "--license", help="Generic adapters: the data's license (SPDX id)."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Generic adapters: taxonomy domain of the data."),
    source_id: Optional[str] = typer.Option(None, "--source-id", help="Generic adapters: the source id records get."),
    redistribution: Optional[str] = typer.Option(None, "--redistribution",
                                                 help="Generic adapters: allowed|noncommercial|research_only|"
                                                      "forbidden|unknown (default unknown)."),
    label_map: Optional[Path] = typer.Option(None, "--label-map", help="YAML of your label -> canonical defect type."),
    include_unlabeled: bool = typer.Option(False, "--include-unlabeled",
                                           help="Keep unlabelled samples (WM-811K) with split=unlabeled."),
    opt: list[str] = typer.Option([], "--opt", help="Adapter option KEY=VALUE (repeatable), see `sources`."),
    executor: str = typer.Option("local", "--executor", help="local (process pool of --workers) or ray "
                                                             "(Ray tasks; pip install 'imdd[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="--executor ray: the cluster (ray://head:10001, auto); "
                                                   "default $RAY_ADDRESS, else a local Ray instance."),
    as_json: bool = JSON_OPT,
) -> None:
    """Ingest a source dataset: normalize to 512x512, store, catalog; quarantine bad files."""
    make_executor(executor, workers, ray_address)  # a wrong --executor is a run-level error before any work
    ws = workspace(ctx)
    adapter_options = _parse_opts(opt)
    if include_unlabeled:
        adapter_options["include_unlabeled"] = True
    run = dict(resize_mode=resize_mode.value if resize_mode else None, jpeg_quality=jpeg_quality,
               max_pixels=max_pixels, workers=workers, limit=limit, categories=category, commit_every=commit_every,
               label_map=load_label_map(label_map), executor=executor, ray_address=ray_address,
               tile_aspect=tile_aspect, tile_overlap=tile_overlap)
    if source == "all":
        if roots is None:
            raise RootError("`ingest all` needs --roots FILE (YAML of source id -> root)")
        summary = ingest_all(ws, roots, adapter_options, **run)
        emit_ingest_all(summary, as_json)
        if summary["failed"]:
            raise typer.Exit(1)
        return
    if root is None:
        raise RootError("--root is required (the folder the archive unpacks to)")
    entry = source_entry(source, license=license, domain=domain, source_id=source_id, redistribution=redistribution)
    summary = ingest_source(ws, entry.adapter_id, root, entry=entry, adapter_options=adapter_options, **run)
    emit(summary, as_json, title=f"ingest {entry.id}")


def emit_ingest_all(summary: dict, as_json: bool) -> None:
    """`ingest all`: one table row per source (failed ones with their error) and the totals."""
    def counts(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items())

    rows = [[sid, "ok", r["records"], r["written"], r["unchanged"], r["quarantined"], counts(r.get("by_split", {})),
             counts(r.get("by_label", {}))] for sid, r in summary["sources"].items()]
    rows += [[sid, f"failed: {message}", None, None, None, None, None, None]
             for sid, message in summary["failed"].items()]
    rows.append(["total", f"{len(summary['sources'])} ok, {len(summary['failed'])} failed", summary["records"], None,
                 None, summary["quarantined"], None, None])
    emit_rows(summary, as_json, ["source", "status", "records", "written", "unchanged", "quarantined", "by split",
                                 "by label"], rows, "ingest all")


def register(app: typer.Typer) -> None:
    """Add `ingest` to `app`."""
    app.command("ingest")(run_level_errors("ingest")(ingest_cmd))
