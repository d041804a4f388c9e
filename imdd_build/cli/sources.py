"""Registry commands: `sources` (the registry, download checks, README table) and `taxonomy check`.

Added to the app by `register(app)`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..console import emit, emit_rows, err, progress_bar
from ..registry import load_registry, markdown_table
from ..roots import check_roots
from ..source_entry import did_you_mean, generic_adapters, known_ids
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
        emit_rows({"command": "sources", "sources": rows, "generic_adapters": generic}, as_json,
                  ["id", "dataset", "license", "redistribution", "annotation", "adapter"],
                  [[r["id"], r["name"], r["license"], r["redistribution"], ", ".join(r["annotation"]),
                    "yes" if r["adapter"] else "not yet"] for r in rows], "sources",
                  [f"generic adapters (--license/--domain): {', '.join(generic)}"])
        return
    with progress_bar("check roots") as bar:
        checks = check_roots(roots, tolerance, on_total=bar.total, on_advance=bar.advance)
    summary = {"command": "sources", "roots": checks,
               "incomplete": sorted(s for s, c in checks.items() if c["status"] in ("incomplete", "mismatch")),
               "missing": sorted(s for s, c in checks.items() if c["status"] in ("missing", "error"))}
    table = []
    for sid, c in checks.items():
        f = c.get("found", {})
        found = f"{f['total']} of {f['listed']} listed" if f else "-"
        notes = "; ".join(f"{d['count']}: found {d['found']}, published {d['published']}"
                          for d in c.get("differences", [])) or c.get("error", "")
        table.append([sid, c["status"], found, c["root"], notes])
    emit_rows(summary, as_json, ["source", "status", "samples", "root", "differences / error"], table,
              "sources --roots", [f"{k}: {', '.join(summary[k])}" for k in ("incomplete", "missing") if summary[k]])


def emit_options(name: str, registry: dict, as_json: bool) -> None:
    """`sources --options ID`: the adapter's typed options with defaults and help."""
    adapter_id = registry[name].adapter_id if name in registry else name
    if adapter_id not in ADAPTERS:
        raise RootError(f"--options {name!r}: no such source or adapter; {did_you_mean(name, known_ids())}choose from "
                        f"{', '.join(sorted(set(ADAPTERS) | set(registry)))}")
    rows = describe(ADAPTERS[adapter_id].Options)
    emit_rows({"command": "sources", "adapter": adapter_id, "options": rows}, as_json,
              ["--opt", "type", "default", "help"],
              [[f"{r['name']}=...", r["type"], r["default"], r["help"]] for r in rows],
              f"options of {adapter_id} (--opt KEY=VALUE)", [] if rows else [f"{adapter_id}: no options"])


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
