"""`caption`: template captions offline, or LLM drafts (`--llm`, with `--batch` for the Batch API).

Added to the app by `register(app)`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..caption import batch as llm_batch
from ..caption import caption_workspace
from ..caption.checks import check_workspace
from ..caption.llm import DEFAULT_MODEL, LLMOptions, caption_llm
from ..caption.llm_records import count_candidates
from ..caption.pricing import load_prices
from ..caption.prompt import RESPONSE_FORMATS
from ..console import emit, err, progress_bar
from ..errors import RunError
from .common import JSON_OPT, run_level_errors, workspace


def caption_cmd(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Redraft template drafts too (expert work is kept)."),
    source: Optional[str] = typer.Option(None, "--source", help="Only this source."),
    llm: bool = typer.Option(False, "--llm", help="Draft with an LLM (OpenAI or any OpenAI-compatible server)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="--llm: model name as the server knows it."),
    base_url: Optional[str] = typer.Option(None, "--base-url", envvar="OPENAI_BASE_URL",
                                           help="--llm: server URL, e.g. http://localhost:8000/v1 (vLLM)."),
    vision: bool = typer.Option(False, "--vision/--no-vision", help="--llm: send the image and mask overlay."),
    image_detail: str = typer.Option("high", "--image-detail", help="--vision: low, high or auto."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="--llm: requests in flight."),
    transport: str = typer.Option("auto", "--transport",
                                  help="--llm: HTTP transport under the openai client: auto (aiohttp when "
                                       "installed), aiohttp or httpx."),
    processes: int = typer.Option(0, "--processes", min=0,
                                  help="--llm: client processes sharing --concurrency (0: one per 64 in flight, "
                                       "at most one per core)."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0.0, help="--llm: stop before spending more USD."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="--llm: at most N records (requests in batch mode)."),
    where: Optional[str] = typer.Option(None, "--where", help="--llm: SQL filter over key, source, split, label, "
                                                              "caption_status, caption_source, product, domain."),
    dry_run: bool = typer.Option(False, "--dry-run", help="--llm: estimate tokens and cost, send nothing."),
    batch: Optional[str] = typer.Option(None, "--batch", help="--llm: submit, status or collect (OpenAI Batch API)."),
    prices: Optional[Path] = typer.Option(None, "--prices", help="--llm: YAML of model -> {input, output} USD/1M tokens."),
    price_in: Optional[float] = typer.Option(None, "--price-in", min=0.0, help="--llm: USD per 1M input tokens."),
    price_out: Optional[float] = typer.Option(None, "--price-out", min=0.0, help="--llm: USD per 1M output tokens."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.1, help="--llm: seconds per request."),
    max_retries: int = typer.Option(6, "--max-retries", min=0, help="--llm: retries on 429/5xx/timeouts."),
    max_tokens: int = typer.Option(400, "--max-tokens", min=16, help="--llm: output token cap per request."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="--llm: sampling temperature."),
    fmt: str = typer.Option("json_schema", "--response-format",
                            help="--llm: json_schema (falls back when refused), json_object or none."),
    as_json: bool = JSON_OPT,
) -> None:
    """Draft captions: offline from each record's facts (template), or with an LLM (--llm)."""
    ws = workspace(ctx)
    if not llm:
        if batch or dry_run:
            raise RunError("--batch and --dry-run need --llm")
        with ws.catalog() as catalog:
            todo = catalog.count(source=source) if source else catalog.count()
            with progress_bar("caption") as bar:
                bar.total(todo)
                summary = caption_workspace(catalog, force=force, source=source, on_record=bar.advance)
            summary.update(check_workspace(catalog, source=source))
        emit(summary, as_json)
        return
    if force:
        raise RunError("--force is for template captions; --llm redrafts on its own when the prompt, model, "
                         "options or a record's facts change, and never pays twice for the same request")
    if batch not in (None, "submit", "status", "collect"):
        raise RunError(f"invalid --batch {batch!r} (submit, status or collect)")
    if fmt not in RESPONSE_FORMATS:
        raise RunError(f"invalid --response-format {fmt!r} ({', '.join(RESPONSE_FORMATS)})")
    if transport not in ("auto", "aiohttp", "httpx"):
        raise RunError(f"invalid --transport {transport!r} (auto, aiohttp or httpx)")
    if image_detail not in ("low", "high", "auto"):
        raise RunError(f"invalid --image-detail {image_detail!r} (low, high or auto)")
    options = LLMOptions(model=model, base_url=base_url, vision=vision, image_detail=image_detail,
                         concurrency=concurrency, processes=processes, transport=transport, max_cost=max_cost, limit=limit, where=where, source=source,
                         timeout=timeout, max_retries=max_retries, max_tokens=max_tokens,
                         temperature=temperature, response_format=fmt, dry_run=dry_run)
    price_table = load_prices(model, prices, price_in, price_out)
    with ws.catalog() as catalog:
        if batch and not dry_run:
            if batch == "submit":
                summary = llm_batch.submit(catalog, ws.store(), options, price_table, ws.root / "llm-batches")
            elif batch == "status":
                summary = llm_batch.status(catalog, options)
            else:
                summary = llm_batch.collect(catalog, ws.store(), options, price_table)
        else:
            todo = count_candidates(catalog, source, where)
            with progress_bar("caption --llm") as bar:
                bar.total(todo if limit is None else min(todo, limit))
                summary = caption_llm(catalog, ws.store(), options, price_table, on_record=bar.advance)
            if summary.get("error"):
                err.print(f"[red]error:[/red] {escape(summary['error'])}")
    emit(summary, as_json)
    if summary.get("error"):
        raise typer.Exit(2)
    if summary.get("stopped") == "interrupted":
        raise typer.Exit(130)  # what a shell reports for Ctrl-C; answers so far are kept


def register(app: typer.Typer) -> None:
    """Add `caption` to `app`."""
    app.command("caption")(run_level_errors("caption")(caption_cmd))
