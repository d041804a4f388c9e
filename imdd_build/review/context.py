"""What every route of the review app shares, on `app.state.review`, and the dependencies that read it.

`ReviewContext` holds the workspace paths, the image store, one `ReviewQueue` per worker thread
(each with its own catalog connection), the templates, static files and guidelines, the login
throttle and the cookie settings, and authenticates a request from its headers (the `gate.Gate`
middleware calls that before a body is read). The module-level dependencies (`api_user`,
`admin_user`, `page_session`, `checked_key`) find the context through `request.app.state`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates

from ..catalog import Catalog
from ..store import Store
from ..taxonomy import GUIDELINES_DIR
from . import auth
from .common import Reviewer, valid_key
from .gate import Refusal, log
from .queue import ReviewQueue

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "imdd_session"
LOGIN_CSRF_COOKIE = "imdd_login_csrf"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class ReviewContext:
    """The review app's shared state over one workspace."""

    def __init__(self, workspace_root: Path, lease_seconds: float = 900.0, secure_cookies: bool = False):
        self.workspace_root = Path(workspace_root)
        self.catalog_path = self.workspace_root / "catalog.sqlite"
        if not self.catalog_path.exists():
            raise FileNotFoundError(f"no catalog at {self.catalog_path}: ingest and caption first")
        auth.private(self.catalog_path)
        self.store = Store(self.workspace_root / "store")
        self.lease_seconds = lease_seconds
        self.secure_cookies = secure_cookies
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.static = {p.name: p for p in (HERE / "static").iterdir() if p.suffix in STATIC_TYPES}
        self.guidelines = {p.stem: p for p in sorted(GUIDELINES_DIR.glob("*")) if p.suffix in (".md", ".yaml")}
        self.throttle = auth.LoginThrottle()
        self._local = threading.local()

    def queue(self) -> ReviewQueue:
        """This thread's queue (and catalog connection), opened on first use."""
        q = getattr(self._local, "queue", None)
        if q is None:
            q = self._local.queue = ReviewQueue(Catalog(self.catalog_path), lease_seconds=self.lease_seconds)
        return q

    def authenticate(self, headers, method: str) -> Reviewer:
        """The reviewer a request's headers name (Bearer token, or session cookie + CSRF header); else Refusal."""
        header = headers.get("authorization")
        db = self.queue().db
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise Refusal(401, "use Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
            reviewer = auth.verify_token(db, token.strip())
            if reviewer is None:
                log.warning("rejected API token (%s)", "no token" if not token.strip() else "unknown token")
                raise Refusal(401, "missing or invalid token", {"WWW-Authenticate": "Bearer"})
            return reviewer
        from starlette.requests import cookie_parser

        found = auth.session(db, cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE))
        if found is None:
            raise Refusal(401, "missing or invalid token", {"WWW-Authenticate": "Bearer"})
        reviewer, csrf = found
        if method not in ("GET", "HEAD") and not auth.csrf_ok(csrf, headers.get("x-csrf-token")):
            raise Refusal(403, "missing or wrong X-CSRF-Token")
        return reviewer


def context(request: Request) -> ReviewContext:
    return request.app.state.review


def unauthorized(detail: str = "missing or invalid token") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def refused(refusal: Refusal) -> HTTPException:
    return HTTPException(refusal.status, refusal.detail, headers=refusal.headers or None)


async def api_user(request: Request) -> Reviewer:
    """The gate authenticated `/api/` requests already (no second thread hop); pages ask here."""
    reviewer = getattr(request.state, "reviewer", None)
    if reviewer is not None:
        return reviewer
    try:
        return await anyio.to_thread.run_sync(context(request).authenticate, request.headers, request.method)
    except Refusal as refusal:
        raise refused(refusal) from None


async def admin_user(reviewer: Reviewer = Depends(api_user)) -> Reviewer:
    if not reviewer.is_admin:
        raise HTTPException(403, "admins only")
    return reviewer


def page_session(request: Request) -> Optional[tuple[Reviewer, str]]:
    """The page's session (reviewer, csrf token) from its cookie, or None."""
    return auth.session(context(request).queue().db, request.cookies.get(SESSION_COOKIE))


def checked_key(key: str) -> str:
    if not valid_key(key):
        raise HTTPException(400, "invalid key")
    return key
