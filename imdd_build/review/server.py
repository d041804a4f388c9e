"""The review web app (FastAPI): server-rendered pages, plain JS, a JSON API; every route but /login needs a token.

API clients send `Authorization: Bearer <token>`; the page logs in with the token once and then
holds a session cookie, and sends the session's CSRF token in `X-CSRF-Token` with every POST.
Images and masks are served by catalog key only (the store reference comes from the record, never
from the request). Each worker thread has its own catalog connection; writes are serialized.
`gate.Gate` runs first: Host/Origin checks, authentication before the body is read, a 64 KiB body
limit, JSON parsed off the event loop, security headers on every response.

Blind double review: a reviewer who is no admin never sees another reviewer's decision, nor
anything derived from it: the answer to a double-reviewed item's review holds no state or outcome,
`/api/stats` gives them only item, open and leased counts, an item is visible to them only while
they hold its lease, and their history shows items as they were when they decided.

`create_app` builds the app: the shared state (`context.ReviewContext`, on `app.state.review`), the
exception handlers, the routers of `routes.pages`, `routes.items` and `routes.admin`, and the gate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .common import Conflict, Invalid, NotFound
from .context import LOGIN_CSRF_COOKIE, SESSION_COOKIE, ReviewContext
from .gate import Gate, log, short_errors
from .routes import admin, items, pages


async def _bad_request(_request, exc):
    return JSONResponse({"detail": short_errors(exc.errors())}, status_code=422)


async def _not_found(_request, _exc):
    return JSONResponse({"detail": "not found"}, status_code=404)


async def _conflict(_request, exc):
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _invalid(_request, exc):
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _forbidden(_request, exc):
    return JSONResponse({"detail": str(exc) or "forbidden"}, status_code=403)


def create_app(workspace_root: Path, lease_seconds: float = 900.0, secure_cookies: bool = False,
               allowed_hosts: Optional[Iterable[str]] = None) -> FastAPI:
    """The app over a workspace. `allowed_hosts`: the names the `Host` header may carry (None: any)."""
    ctx = ReviewContext(workspace_root, lease_seconds=lease_seconds, secure_cookies=secure_cookies)
    ctx.queue().drain()  # finish writes a crash left in the outbox
    app = FastAPI(title="imdd review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ctx
    for error, handler in ((RequestValidationError, _bad_request), (NotFound, _not_found), (Conflict, _conflict),
                           (Invalid, _invalid), (PermissionError, _forbidden)):
        app.add_exception_handler(error, handler)
    for module in (pages, items, admin):
        app.include_router(module.router)
    app.add_middleware(Gate, authenticate=ctx.authenticate, cookie_names=(SESSION_COOKIE, LOGIN_CSRF_COOKIE),
                       allowed_hosts=allowed_hosts)
    return app


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def serve(workspace_root: Path, host: str = "127.0.0.1", port: int = 8765, lease_seconds: float = 900.0,
          secure_cookies: bool = False, log_level: str = "warning", allowed_hosts: Iterable[str] = ()) -> None:
    """Run the app with uvicorn. The `Host` header is checked against `allowed_hosts` (plus the loopback
    names when bound to loopback); with neither, any Host is accepted."""
    import ipaddress

    import uvicorn

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    hosts = [*allowed_hosts, *((host, *LOOPBACK_NAMES) if loopback else ())]
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    app = create_app(workspace_root, lease_seconds=lease_seconds, secure_cookies=secure_cookies,
                     allowed_hosts=hosts or None)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)
