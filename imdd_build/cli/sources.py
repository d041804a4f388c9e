"""Registry commands: `sources` (the registry, download checks, README table) and `taxonomy check`.

Added to the app by `register(app)`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..console import emit, err, progress_bar
from ..registry import load_registry, markdown_table
from ..roots import check_roots
from ..source_entry import generic_adapters
from ..sources import ADAPTERS, RootError
from ..sourcekit.options import describe
from ..taxcheck import check_taxonomy
from ..taxonomy import load_taxonomy
from .common import JSON_OPT, run_level_errors, workspace


def sources_cmd(
    roots: Optional[Path] = typer.Option(None, "--roots", help="YAML of source id -> root: check each download."),
    tolerance: float = typer.Option(0.0, "--tolerance", min=0.0,
                                    help="Relative difference to published counts still accepted."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the README table of sources."),
    options: Optional[str] = typer.Option(None, "--options", metavar="ID",
                                          help="The options (--opt KEY=VALUE) a source or adapter accepts."),
    as_json: bool = JSON_OPT,
) -> None:
    """The source registry; with --roots, which roots exist and whether their counts match the published ones."""
    registry = load_registry()
    if options is not None:
        emit_options(options, registry, as_json)
        return
    if markdown:
        sys.stdout.write(markdown_table(registry))
        return
    rows = [{"id": e.id, "name": e.name, "license": e.license, "redistribution": e.redistribution,
             "annotation": e.annotation, "domains": e.all_domains(), "official_split": e.official_split,
             "published_counts": e.counts, "adapter": e.adapter_id in ADAPTERS} for e in registry.values()]
    generic = generic_adapters()
    if roots is None:
        if not as_json:
            for r in rows:
                err.print(f"{r['id']:<12} {r['name'][:30]:<31} {r['license'][:20]:<21} {r['redistribution']:<14} "
                          f"{', '.join(r['annotation'])}", markup=False)
            err.print(f"generic adapters (--license/--domain): {', '.join(generic)}", markup=False)
        emit({"command": "sources", "sources": rows, "generic_adapters": generic}, as_json)
        return
    with progress_bar("check roots") as bar:
        checks = check_roots(roots, tolerance, on_total=bar.total, on_advance=bar.advance)
    if not as_json:
        for sid, c in checks.items():
            f = c.get("found", {})
            found = f"{f['total']} of {f['listed']} listed" if f else "-"
            extra = "; ".join(f"{d['count']}: found {d['found']}, published {d['published']}"
                              for d in c.get("differences", [])) or c.get("error", "")
            err.print(f"{sid:<12} {c['status']:<11} samples {found:<20} {c['root']}  {extra}", markup=False)
    summary = {"command": "sources", "roots": checks,
               "incomplete": sorted(s for s, c in checks.items() if c["status"] in ("incomplete", "mismatch")),
               "missing": sorted(s for s, c in checks.items() if c["status"] in ("missing", "error"))}
    emit(summary, as_json)


def emit_options(name: str, registry: dict, as_json: bool) -> None:
    """`sources --options ID`: the adapter's typed options with defaults and help."""
    adapter_id = registry[name].adapter_id if name in registry else name
    if adapter_id not in ADAPTERS:
        raise RootError(f"--options {name!r}: no such source or adapter; choose from "
                        f"{', '.join(sorted(set(ADAPTERS) | set(registry)))}")
    rows = describe(ADAPTERS[adapter_id].Options)
    if not as_json:
        if not rows:
            err.print(f"{adapter_id}: no options", markup=False)
        for r in rows:
            default = "" if r["default"] is None else f" (default {r['default']})"
            err.print(f"--opt {r['name']}=<{r['type']}>{default}\n    {r['help']}", markup=False)
    emit({"command": "sources", "adapter": adapter_id, "options": rows}, as_json)


def taxonomy_check_cmd(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """List source labels that map to no canonical defect type; print domain and defect-type counts.

    Exits 1 when a label is unmapped or the taxonomy is inconsistent.
    """
    ws = workspace(ctx)
    catalog = ws.catalog() if ws.catalog_path.exists() else None
    try:
        summary = check_taxonomy(load_taxonomy(), load_registry(), ADAPTERS, catalog)
    finally:
        if catalog is not None:
            catalog.close()
    if not as_json:
        for u in summary["unmapped"]:
            err.print(f"unmapped {u['source']}: {u['label']!r} ({u['where']})", markup=False)
        for problem in summary["problems"]:
            err.print(f"problem {problem}", markup=False)
    emit({k: v for k, v in summary.items() if as_json or k not in ("labels_per_defect_type",)}, as_json,
         title="taxonomy check")
    if summary["unmapped"] or summary["problems"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `sources` and `taxonomy check` to `app`."""
    app.command("sources")(run_level_errors("sources")(sources_cmd))
    taxonomy_app = typer.Typer(help="The defect taxonomy (annotation_guidelines/taxonomy.yaml).", no_args_is_help=True)
    taxonomy_app.command("check")(run_level_errors("taxonomy check")(taxonomy_check_cmd))
    app.add_typer(taxonomy_app, name="taxonomy")
