"""`imdd-build`: a thin Typer layer; each command parses options and calls one library function."""

from __future__ import annotations

import difflib
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
import yaml
from pydantic import ValidationError
from rich.markup import escape

from . import __version__
from .caption import caption_workspace
from .console import emit, err, one_line_errors, progress_bar
from .dedupe import DEFAULT_RADIUS, LEAKAGE_RULE
from .executor import default_workers, make_executor
from .ingest import ingest
from .normalize import NormalizeOptions
from .record import KEY_RE, Quarantined
from .registry import SourceEntry, get_source
from .roots import load_roots, read_yaml_mapping
from .shard import ShardOptions, parse_size, write_shards
from .sources import ADAPTERS, RootError
from .sources.demo import generate_demo
from .sourcekit.options import one_line, validate_options
from .taxonomy import load_taxonomy
from .workspace import DEFAULT_WORKSPACE, Workspace

app = typer.Typer(name="imdd-build", help="Build the IMDD industrial-defect image-text corpus.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

# The only commands that may create a workspace; every other one needs an existing catalog.
CREATING_COMMANDS = ("ingest", "demo")

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object as the last line of stdout.")


class ResizeMode(str, Enum):
    letterbox = "letterbox"
    stretch = "stretch"
    crop = "crop"
    tile = "tile"


def _workspace(ctx: typer.Context) -> Workspace:
    return ctx.obj


def run_level_errors(command: str):
    """Run-level failures (bad root, bad option) become one clear line and exit code 2."""
    return one_line_errors(command, (RootError, FileNotFoundError, KeyError, ValueError))


@app.callback()
def main_callback(
    ctx: typer.Context,
    workspace: Optional[Path] = typer.Option(None, "--workspace", envvar="IMDD_WORKSPACE",
                                             help=f"Workspace folder (default {DEFAULT_WORKSPACE})."),
) -> None:
    ctx.obj = Workspace(workspace, create=ctx.invoked_subcommand in CREATING_COMMANDS)


def _print_quarantine(q: Quarantined) -> None:
    err.print(f"[yellow]quarantined[/yellow] {escape(f'{q.source}:{q.path}: {q.reason}')}", highlight=False)


def _parse_opts(pairs: list[str]) -> dict:
    """`--opt key=value` pairs into adapter options (values parsed as YAML scalars: 1, true, a,b)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RootError(f"--opt {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else ""
    return out


def _load_label_map(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    data = read_yaml_mapping(path, "label map", "source label -> canonical defect type")
    return {str(k): v for k, v in data.items()}


def source_entry(source: str, license: Optional[str] = None, domain: Optional[str] = None,
                 source_id: Optional[str] = None, redistribution: Optional[str] = None,
                 name: Optional[str] = None) -> SourceEntry:
    """The registry entry of a public source, or one built from options for a generic adapter."""
    if source in ADAPTERS and getattr(ADAPTERS[source], "generic", False):
        if not license:
            raise RootError(f"the generic adapter {source!r} needs --license (an SPDX id, or 'proprietary'): "
                            "there is no registry entry to take it from")
        sid = source_id or source
        if not KEY_RE.match(sid) or "/" in sid:
            raise RootError(f"--source-id {sid!r}: use lower-case letters, digits, '_' and '-'")
        check_domain(domain)
        try:
            return SourceEntry(id=sid, name=name or sid, adapter=source, license=license,
                               redistribution=redistribution or "unknown", domain=domain or "unknown",
                               domains=[domain] if domain else [],
                               annotation=list(getattr(ADAPTERS[source], "annotation_kinds", ())))
        except ValidationError as exc:
            raise RootError(one_line(exc)) from None
    try:
        entry = get_source(source)
    except KeyError as exc:
        raise RootError(str(exc).strip("'\"") + f"; generic adapters: {', '.join(generic_adapters())}") from None
    if entry.adapter_id not in ADAPTERS:
        raise RootError(f"source {source!r} is registered but has no adapter yet; available: {', '.join(ADAPTERS)}")
    updates = {k: v for k, v in {"license": license, "domain": domain, "redistribution": redistribution}.items() if v}
    if not updates:
        return entry
    check_domain(domain)
    try:  # validated like the registry itself (model_copy would not check the new values)
        return SourceEntry.model_validate({**entry.model_dump(), **updates})
    except ValidationError as exc:
        raise RootError(one_line(exc)) from None


def check_domain(domain: Optional[str]) -> None:
    """A domain given on the command line or in a roots file must be one of the taxonomy's."""
    known = load_taxonomy().domains
    if domain and domain != "unknown" and domain not in known:
        close = difflib.get_close_matches(domain, list(known), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise RootError(f"domain {domain!r} is not in the taxonomy; {hint}choose from "
                        f"{', '.join(sorted({*known, 'unknown'}))}")


def generic_adapters() -> list[str]:
    return sorted(a for a, cls in ADAPTERS.items() if getattr(cls, "generic", False))


def _run_ingest(ws: Workspace, source: str, root: Path, resize_mode: Optional[str], jpeg_quality: int,
                max_pixels: int, workers: int, limit: Optional[int], categories: list[str],
                commit_every: int = 256, entry: Optional[SourceEntry] = None, adapter_options: Optional[dict] = None,
                label_map: Optional[dict] = None, executor: str = "local", ray_address: Optional[str] = None,
                tile_aspect: float = 2.0, tile_overlap: float = 0.25) -> dict:
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
                        on_outcome=bar.advance, on_quarantine=_print_quarantine)
    with ws.catalog() as catalog:
        return result.summary(catalog)


def _entry_from_spec(sid: str, spec: dict) -> SourceEntry:
    adapter = spec.get("adapter")
    if adapter:
        return source_entry(adapter, license=spec.get("license"), domain=spec.get("domain"), source_id=sid,
                            redistribution=spec.get("redistribution"), name=spec.get("name"))
    return source_entry(sid)


@app.command("ingest")
@run_level_errors("ingest")
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
    ws = _workspace(ctx)
    adapter_options = _parse_opts(opt)
    if include_unlabeled:
        adapter_options["include_unlabeled"] = True
    labels = _load_label_map(label_map)
    mode = resize_mode.value if resize_mode else None
    if source == "all":
        if roots is None:
            raise RootError("`ingest all` needs --roots FILE (YAML of source id -> root)")
        results, failed = {}, {}
        for sid, spec in load_roots(roots).items():
            try:
                entry = _entry_from_spec(sid, spec)
                if not spec["root"].exists():
                    raise RootError(f"{spec['root']}: not found")
                results[sid] = _run_ingest(ws, entry.adapter_id, spec["root"], mode, jpeg_quality, max_pixels,
                                           workers, limit, category, commit_every, entry=entry,
                                           adapter_options={**adapter_options, **(spec.get("options") or {})},
                                           label_map=labels, executor=executor, ray_address=ray_address,
                                           tile_aspect=tile_aspect, tile_overlap=tile_overlap)
            except RootError as exc:  # one unusable root does not stop the others
                failed[sid] = str(exc)
                err.print(f"[red]error[/red] {escape(sid)}: {escape(str(exc))}")
        summary = {"command": "ingest", "source": "all", "sources": results, "failed": failed,
                   "records": sum(r["records"] for r in results.values()),
                   "quarantined": sum(r["quarantined"] for r in results.values())}
        emit(summary, as_json, title="ingest all")
        if failed:
            raise typer.Exit(1)
        return
    if root is None:
        raise RootError("--root is required (the folder the archive unpacks to)")
    entry = source_entry(source, license=license, domain=domain, source_id=source_id, redistribution=redistribution)
    summary = _run_ingest(ws, entry.adapter_id, root, mode, jpeg_quality, max_pixels, workers, limit, category,
                          commit_every, entry=entry, adapter_options=adapter_options, label_map=labels,
                          executor=executor, ray_address=ray_address, tile_aspect=tile_aspect,
                          tile_overlap=tile_overlap)
    emit(summary, as_json, title=f"ingest {entry.id}")


# `caption` (template and --llm) lives in cli_caption; imported here to keep the commands' order.
from . import cli_caption  # noqa: E402,F401


@app.command("shard")
@run_level_errors("shard")
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
    as_json: bool = JSON_OPT,
) -> None:
    """Write deterministic Parquet + WebDataset shards, manifest.json and README.md."""
    if order not in ("shuffle", "key"):
        raise ValueError(f"invalid --order {order!r} (shuffle or key)")
    options = ShardOptions(out=out, formats=tuple(f.strip() for f in fmt.split(",") if f.strip()),
                           max_shard_bytes=parse_size(max_shard_size), image_ext=image_ext, order=order,
                           seed=seed, sources=tuple(source), workers=workers)
    ws = _workspace(ctx)
    dedupe = cli_publish.dedupe_before_sharding(ws, options.sources, radius, leakage, workers)
    options.exclude = frozenset(dedupe.dropped)
    with ws.catalog() as catalog, progress_bar("shard") as bar:
        summary = write_shards(catalog, ws.store(), options, on_total=bar.total, on_advance=bar.add)
    summary.update(dedupe={k: v for k, v in dedupe.summary().items() if k != "dropped"},
                   dropped_for_leakage=sorted(dedupe.dropped))
    emit(summary, as_json)


@app.command("demo")
@run_level_errors("demo")
def demo_cmd(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(None, "--out", help="Shard folder (default <workspace>/demo-shards)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated data."),
    workers: int = typer.Option(default_workers(), "--workers", min=1, help="Worker processes."),
    as_json: bool = JSON_OPT,
) -> None:
    """Generate the built-in demo data and run ingest -> caption -> shard on it (no downloads)."""
    ws = _workspace(ctx)
    source_root = generate_demo(ws.root / "demo-source", seed=seed)
    ingested = _run_ingest(ws, "demo", source_root, None, 95, 150_000_000, workers, None, [])
    with ws.catalog() as catalog:
        with progress_bar("caption") as bar:
            bar.total(catalog.count(source="demo"))
            captioned = caption_workspace(catalog, source="demo", on_record=bar.advance)
        options = ShardOptions(out=out or ws.root / "demo-shards", sources=("demo",), workers=workers)
        with progress_bar("shard") as bar:
            sharded = write_shards(catalog, ws.store(), options, on_total=bar.total, on_advance=bar.add)
    summary = {"command": "demo", "source_root": str(source_root), "workspace": str(ws.root),
               "records": ingested["records"], "quarantined": ingested["quarantined"],
               "captioned": captioned["captioned"], "out": sharded["out"], "splits": sharded["splits"],
               "shards": sharded["shards"],
               "next": f"pip install datasets; then datasets.load_dataset('{sharded['out']}')"}
    emit(summary, as_json)


@app.command("status")
@run_level_errors("status")
def status_cmd(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """Counts in the catalog: by source, split, label and caption status."""
    ws = _workspace(ctx)
    with ws.catalog() as catalog:
        summary = {"command": "status", "workspace": str(ws.root), "records": catalog.count(),
                   "by_source": catalog.counts_by("source"), "by_split": catalog.counts_by("split"),
                   "by_label": catalog.counts_by("label"),
                   "by_caption_status": catalog.counts_by("caption_status"),
                   "quarantined": len(catalog.quarantined())}
    emit(summary, as_json)


@app.command("quarantine")
@run_level_errors("quarantine")
def quarantine_cmd(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, "--source", help="Only this source."),
    as_json: bool = JSON_OPT,
) -> None:
    """List quarantined files with the reason."""
    with _workspace(ctx).catalog() as catalog:
        items = catalog.quarantined(source)
    emit({"command": "quarantine", "count": len(items), "items": [q.model_dump() for q in items]}, as_json)


@app.command("version")
def version_cmd(as_json: bool = JSON_OPT) -> None:
    """Print the version."""
    emit({"command": "version", "version": __version__}, as_json)


def main() -> None:
    app()


# Commands that live in their own modules register themselves on `app` when imported.
from . import cli_publish  # noqa: E402,F401  (push-to-hub, dedupe, stats)
from . import cli_review  # noqa: E402,F401
from . import cli_sources  # noqa: E402,F401  (sources, taxonomy check)
