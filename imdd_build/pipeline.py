"""The runs a command starts, as plain functions the CLI calls: ingest one source or every root of a
roots file, dedupe before sharding, and the demo (generate -> ingest -> caption -> shard).

Progress goes to the console's bars on stderr; results come back as the summary dicts the commands print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.markup import escape

from .caption import caption_workspace
from .console import err, progress_bar
from .dedupe import LEAKAGE_POLICIES, DedupeResult, find_duplicates, save_groups
from .errors import RunError
from .executor import make_executor
from .ingest import ingest
from .normalize import NormalizeOptions
from .record import Quarantined
from .registry import SourceEntry
from .roots import load_roots
from .seeded_splits import split_message
from .shard import ShardOptions, write_shards
from .source_entry import entry_from_spec, source_entry
from .sources import ADAPTERS, RootError
from .sources.demo import generate_demo
from .sourcekit.options import validate_options
from .workspace import Workspace


def print_quarantine(q: Quarantined) -> None:
    """One yellow line per quarantined file, as it happens."""
    err.print(f"[yellow]quarantined[/yellow] {escape(f'{q.source}:{q.path}: {q.reason}')}", highlight=False)


def ingest_source(ws: Workspace, source: str, root: Path, resize_mode: Optional[str], jpeg_quality: int,
                  max_pixels: int, workers: int, limit: Optional[int], categories: list[str],
                  commit_every: int = 256, entry: Optional[SourceEntry] = None,
                  adapter_options: Optional[dict] = None, label_map: Optional[dict] = None,
                  executor: str = "local", ray_address: Optional[str] = None,
                  tile_aspect: float = 2.0, tile_overlap: float = 0.25) -> dict:
    """Ingest one source root with a progress bar; returns the ingest summary."""
    entry = entry or source_entry(source)
    options = NormalizeOptions(resize_mode=resize_mode or entry.resize_mode, jpeg_quality=jpeg_quality,
                               max_pixels=max_pixels, tile_aspect=tile_aspect, tile_overlap=tile_overlap)
    adapter_options = {"categories": categories or None, **(adapter_options or {})}
    if entry.adapter_id in ADAPTERS:  # a typo is reported before any progress output
        try:
            validate_options(entry.adapter_id, ADAPTERS[entry.adapter_id].Options, adapter_options)
        except ValueError as exc:
            raise RootError(str(exc)) from None
    with progress_bar(f"ingest {entry.id}") as bar:
        result = ingest(ws, entry.adapter_id, root, entry, options, workers=workers, limit=limit,
                        commit_every=commit_every, adapter_options=adapter_options, label_map=label_map,
                        executor=make_executor(executor, workers, ray_address), on_total=bar.total,
                        on_outcome=bar.advance, on_quarantine=print_quarantine)
    with ws.catalog() as catalog:
        return result.summary(catalog)


def ingest_all(ws: Workspace, roots: Path, adapter_options: dict, **kwargs) -> dict:
    """`ingest all --roots FILE`: every source of the roots file; one unusable root (reported on stderr
    and under `failed`) does not stop the others. `kwargs` are `ingest_source`'s options."""
    results, failed = {}, {}
    for sid, spec in load_roots(roots).items():
        try:
            entry = entry_from_spec(sid, spec)
            if not spec["root"].exists():
                raise RootError(f"{spec['root']}: not found")
            results[sid] = ingest_source(ws, entry.adapter_id, spec["root"], entry=entry,
                                         adapter_options={**adapter_options, **(spec.get("options") or {})},
                                         **kwargs)
        except RootError as exc:
            failed[sid] = str(exc)
            err.print(f"[red]error[/red] {escape(sid)}: {escape(str(exc))}")
    return {"command": "ingest", "source": "all", "sources": results, "failed": failed,
            "records": sum(r["records"] for r in results.values()),
            "quarantined": sum(r["quarantined"] for r in results.values())}


def dedupe_before_sharding(ws: Workspace, sources: tuple[str, ...], radius: int, leakage: str,
                           workers: int, seeded_splits: str = "group") -> DedupeResult:
    """What `shard` runs first: the dedupe of push-to-hub with its seeded regrouping and leakage
    policy, over the sources being sharded (groups and splits saved like `dedupe` does); the caller
    leaves `result.dropped` out."""
    if leakage not in LEAKAGE_POLICIES:
        raise RunError(f"invalid --leakage {leakage!r} (drop-train or keep)")
    with ws.catalog() as catalog, progress_bar("dedupe") as bar:
        result = find_duplicates(catalog, ws.store(), radius=radius, sources=sources, leakage=leakage,
                                 workers=workers, on_total=bar.total, on_record=bar.advance,
                                 seeded_splits=seeded_splits)
        save_groups(catalog, result)
    message = split_message(result)
    if message:
        err.print(message, markup=False)
    leaks = sum(g.leakage for g in result.groups)
    if result.dropped:
        err.print(f"leakage: {leaks} duplicate group(s) span an evaluation split and another split; "
                  f"{len(result.dropped)} copies left out (test copy kept, else validation; --leakage keep "
                  "keeps them)", markup=False)
    elif leaks:
        err.print(f"leakage: {leaks} duplicate group(s) span an evaluation split and another split, kept "
                  "(--leakage keep)", markup=False)
    return result


def shard_workspace(ws: Workspace, options: ShardOptions, radius: int, leakage: str,
                    seeded_splits: str = "group") -> dict:
    """`shard`: dedupe (seeded regrouping, leakage policy) first, then write the shards without the
    dropped copies."""
    dedupe = dedupe_before_sharding(ws, options.sources, radius, leakage, options.workers, seeded_splits)
    options.exclude = frozenset(dedupe.dropped)
    with ws.catalog() as catalog, progress_bar("shard") as bar:
        summary = write_shards(catalog, ws.store(), options, on_total=bar.total, on_advance=bar.add)
    summary.update(dedupe={k: v for k, v in dedupe.summary().items() if k != "dropped"},
                   dropped_for_leakage=sorted(dedupe.dropped))
    return summary


def run_demo(ws: Workspace, out: Optional[Path], seed: int, workers: int) -> dict:
    """`demo`: generate the built-in demo data, then ingest -> caption -> shard it (no downloads)."""
    source_root = generate_demo(ws.root / "demo-source", seed=seed)
    ingested = ingest_source(ws, "demo", source_root, None, 95, 150_000_000, workers, None, [])
    with ws.catalog() as catalog:
        with progress_bar("caption") as bar:
            bar.total(catalog.count(source="demo"))
            captioned = caption_workspace(catalog, source="demo", on_record=bar.advance)
        options = ShardOptions(out=out or ws.root / "demo-shards", sources=("demo",), workers=workers)
        with progress_bar("shard") as bar:
            sharded = write_shards(catalog, ws.store(), options, on_total=bar.total, on_advance=bar.add)
    return {"command": "demo", "source_root": str(source_root), "workspace": str(ws.root),
            "records": ingested["records"], "quarantined": ingested["quarantined"],
            "captioned": captioned["captioned"], "out": sharded["out"], "splits": sharded["splits"],
            "shards": sharded["shards"],
            "next": f"pip install datasets; then datasets.load_dataset('{sharded['out']}')"}
