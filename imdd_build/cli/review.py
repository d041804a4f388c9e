"""`imdd-build review ...`: the expert review queue, its web app, metrics and Label Studio interop."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..console import emit, err
from ..errors import RunError
from .common import JSON_OPT, run_level_errors, workspace


def _queue(ctx: typer.Context):
    from ..review.queue import open_queue

    return open_queue(workspace(ctx))


def enqueue_cmd(
    ctx: typer.Context,
    sample_rate: float = typer.Option(0.05, "--sample-rate", help="Share of each (source, defect type) stratum "
                                                                  "sampled ahead of the rest (0-1)."),
    double_rate: float = typer.Option(0.1, "--double-rate", help="Share of items reviewed blind by two reviewers."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample, the order and the double-review pick."),
    source: Optional[str] = typer.Option(None, "--source", help="Only drafts of this source."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="YAML/JSON of key -> accept|reject (gold items)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Queue the records with a draft caption: failed checks first, then a stratified sample, then the rest."""
    from ..review.common import load_gold

    gold_answers = load_gold(gold) if gold else None
    q = _queue(ctx)
    try:
        summary = q.enqueue(sample_rate=sample_rate, double_rate=double_rate, seed=seed, source=source,
                            gold=gold_answers)
    finally:
        q.catalog.close()
    emit(summary, as_json)


def add_reviewer_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Reviewer name (letters, digits, _ . @ -)."),
    admin: bool = typer.Option(False, "--admin", help="May adjudicate disputed and flagged items."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a reviewer (or replace their token) and print the token once; only its hash is stored."""
    from ..review.auth import add_reviewer

    q = _queue(ctx)
    try:
        reviewer, token = add_reviewer(q.db, name, admin=admin)
    finally:
        q.catalog.close()
    emit({"command": "review add-reviewer", "reviewer": reviewer.name, "admin": reviewer.is_admin, "token": token,
          "note": "shown once: only its hash is stored; run add-reviewer again to replace it"}, as_json)


def revoke_reviewer_cmd(ctx: typer.Context, name: str = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """Disable a reviewer's token and sessions (their decisions stay)."""
    from ..review.auth import revoke_reviewer

    q = _queue(ctx)
    try:
        if not revoke_reviewer(q.db, name):
            raise RunError(f"no reviewer named {name!r}")
    finally:
        q.catalog.close()
    emit({"command": "review revoke-reviewer", "reviewer": name, "revoked": True}, as_json)


def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (default loopback only)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535),
    lease_minutes: float = typer.Option(15.0, "--lease-minutes", min=0.01, help="How long an item stays with a "
                                                                                 "reviewer before it returns."),
    secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Mark cookies Secure (behind HTTPS)."),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="A host name the Host header may carry "
                                                                       "(repeatable; loopback names are allowed on a "
                                                                       "loopback bind)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Run the review web app (FastAPI + uvicorn) on the workspace (--json: the address, printed at start-up)."""
    try:
        from ..review.server import serve
    except ImportError as exc:
        raise RunError(f"the review server needs its extra: pip install 'imdd[review]' ({exc.name} missing)") from None
    from ..review.metrics import serve_counts

    q = _queue(ctx)
    try:
        items, reviewers = serve_counts(q)
    finally:
        q.catalog.close()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err.print(f"[yellow]warning:[/yellow] binding {escape(host)}: reachable from other machines; put it behind "
                  "HTTPS, use --secure-cookies and name the site with --allowed-host")
    if not reviewers:
        err.print("[yellow]warning:[/yellow] no reviewers yet: imdd-build review add-reviewer NAME")
    if not items:
        err.print("[yellow]warning:[/yellow] the queue is empty: imdd-build review enqueue")
    err.print(f"review app on http://{escape(host)}:{port}/ ({items} items, {reviewers} reviewers)")
    if as_json:  # printed before serving: a server's stdout ends with this line (its logs go to stderr)
        emit({"command": "review serve", "url": f"http://{host}:{port}/", "host": host, "port": port,
              "items": items, "reviewers": reviewers}, True)
    serve(workspace(ctx).root, host=host, port=port, lease_seconds=lease_minutes * 60, secure_cookies=secure_cookies,
          allowed_hosts=allowed_host)


def status_cmd(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """Coverage per source and defect type, throughput per reviewer, agreement, gold accuracy."""
    from ..review.metrics import review_status

    q = _queue(ctx)
    try:
        summary = review_status(q)
    finally:
        q.catalog.close()
    emit(summary, as_json)


def _check_format(fmt: str) -> None:
    if fmt != "label-studio":
        raise RunError(f"invalid --format {fmt!r} (label-studio)")


def export_cmd(
    ctx: typer.Context,
    fmt: str = typer.Option("label-studio", "--format", help="label-studio"),
    out: Path = typer.Option(Path("label-studio-tasks.json"), "--out", help="Tasks JSON (config written beside)."),
    image_prefix: str = typer.Option("/data/local-files/?d=", "--image-prefix",
                                     help="Prefix of store/<ab>/<sha>.<ext> in data.image (default: Label Studio "
                                          "local files with LOCAL_FILES_DOCUMENT_ROOT=<workspace>)."),
    all_items: bool = typer.Option(False, "--all", help="Every item, not only open ones."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N tasks (priority order)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Export queue items as Label Studio tasks (image, draft as an editable prediction with its model)."""
    from ..review.labelstudio import export_tasks
    from ..review.common import STATES

    _check_format(fmt)
    q = _queue(ctx)
    try:
        summary = export_tasks(q, out, image_prefix=image_prefix, states=STATES if all_items else ("open",),
                               limit=limit)
    finally:
        q.catalog.close()
    emit(summary, as_json)


def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=False, help="Label Studio JSON export of the exported tasks."),
    fmt: str = typer.Option("label-studio", "--format", help="label-studio"),
    as_json: bool = JSON_OPT,
) -> None:
    """Import Label Studio annotations as decisions (reviewer, final text, lead time)."""
    from ..review.labelstudio import import_tasks

    _check_format(fmt)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    q = _queue(ctx)
    try:
        summary = import_tasks(q, file)
    finally:
        q.catalog.close()
    emit(summary, as_json)


def register(app: typer.Typer) -> None:
    """Add the `review` group to `app`."""
    review_app = typer.Typer(help="Expert review: queue, web app, reviewers, metrics, Label Studio.", no_args_is_help=True)
    review_app.command("enqueue")(run_level_errors("review enqueue")(enqueue_cmd))
    review_app.command("add-reviewer")(run_level_errors("review add-reviewer")(add_reviewer_cmd))
    review_app.command("revoke-reviewer")(run_level_errors("review revoke-reviewer")(revoke_reviewer_cmd))
    review_app.command("serve")(run_level_errors("review serve")(serve_cmd))
    review_app.command("status")(run_level_errors("review status")(status_cmd))
    review_app.command("export")(run_level_errors("review export")(export_cmd))
    review_app.command("import")(run_level_errors("review import")(import_cmd))
    app.add_typer(review_app, name="review")
