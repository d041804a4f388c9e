"""The review web app (FastAPI): server-rendered pages, plain JS, a JSON API; every route but /login needs a token.

API clients send `Authorization: Bearer <token>`; the page logs in with the token once and then
holds a session cookie, and sends the session's CSRF token in `X-CSRF-Token` with every POST.
Images and masks are served by catalog key only (the store reference comes from the record, never
from the request). Each worker thread has its own catalog connection; writes are serialized.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from ..catalog import Catalog
from ..store import Store
from ..taxonomy import GUIDELINES_DIR
from . import auth
from .queue import (
    DECISIONS,
    REASONS,
    Conflict,
    Invalid,
    NotFound,
    Reviewer,
    ReviewQueue,
    guideline_version,
    valid_key,
)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "imdd_session"
LOGIN_CSRF_COOKIE = "imdd_login_csrf"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class ReviewBody(BaseModel):
    decision: str
    version: int
    caption: Optional[str] = Field(None, max_length=8000)
    reason: Optional[str] = Field(None, max_length=200)
    labels: Optional[dict[str, Any]] = None
    time_spent_ms: Optional[float] = None
    note: Optional[str] = Field(None, max_length=2000)


class UndoBody(BaseModel):
    event_id: Optional[int] = None


class CheckBody(BaseModel):
    caption: str = Field(..., max_length=8000)


def create_app(workspace_root: Path, lease_seconds: float = 900.0, secure_cookies: bool = False) -> FastAPI:
    workspace_root = Path(workspace_root)
    catalog_path = workspace_root / "catalog.sqlite"
    if not catalog_path.exists():
        raise FileNotFoundError(f"no catalog at {catalog_path}: ingest and caption first")
    store = Store(workspace_root / "store")
    local = threading.local()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    static = {p.name: p for p in (HERE / "static").iterdir() if p.suffix in STATIC_TYPES}
    guidelines = {p.stem: p for p in sorted(GUIDELINES_DIR.glob("*")) if p.suffix in (".md", ".yaml")}
    stats_cache: dict[str, Any] = {"at": 0.0, "value": None}
    stats_lock = threading.Lock()

    def queue() -> ReviewQueue:
        q = getattr(local, "queue", None)
        if q is None:
            q = local.queue = ReviewQueue(Catalog(catalog_path), lease_seconds=lease_seconds)
        return q

    queue().drain()  # finish writes a crash left in the outbox
    app = FastAPI(title="imdd review", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotFound)
    async def _not_found(_request, exc):
        return JSONResponse({"detail": f"not found: {exc.args[0] if exc.args else ''}"}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(Invalid)
    async def _invalid(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(PermissionError)
    async def _forbidden(_request, exc):
        return JSONResponse({"detail": str(exc) or "forbidden"}, status_code=403)

    # -- authentication ----------------------------------------------------------------------
    def _unauthorized(detail: str = "missing or invalid token") -> HTTPException:
        return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})

    def api_user(request: Request) -> Reviewer:
        header = request.headers.get("authorization")
        db = queue().db
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise _unauthorized("use Authorization: Bearer <token>")
            reviewer = auth.verify_token(db, token.strip())
            if reviewer is None:
                raise _unauthorized()
            return reviewer
        found = auth.session(db, request.cookies.get(SESSION_COOKIE))
        if found is None:
            raise _unauthorized()
        reviewer, csrf = found
        if request.method not in ("GET", "HEAD") and not auth.csrf_ok(csrf, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong X-CSRF-Token")
        return reviewer

    def admin_user(reviewer: Reviewer = Depends(api_user)) -> Reviewer:
        if not reviewer.is_admin:
            raise HTTPException(403, "admins only")
        return reviewer

    def page_session(request: Request) -> Optional[tuple[Reviewer, str]]:
        return auth.session(queue().db, request.cookies.get(SESSION_COOKIE))

    def checked_key(key: str) -> str:
        if not valid_key(key):
            raise HTTPException(400, "invalid key")
        return key

    # -- pages -------------------------------------------------------------------------------
    def login_form(request: Request, status: int = 200, error: Optional[str] = None) -> Response:
        token = auth.secrets.token_urlsafe(24)
        response = templates.TemplateResponse(request, "login.html", {"csrf": token, "error": error},
                                              status_code=status)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies,
                            max_age=3600, path="/login")
        return response

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return login_form(request)

    @app.post("/login")
    def login(request: Request, token: str = Form(..., max_length=256), csrf: str = Form(..., max_length=256)):
        if not auth.csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE) or "", csrf):
            return login_form(request, 403, "The form expired; try again.")
        reviewer = auth.verify_token(queue().db, token.strip())
        if reviewer is None:
            return login_form(request, 401, "Unknown token.")
        sid, _csrf = auth.create_session(queue().db, reviewer)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", secure=secure_cookies,
                            max_age=auth.SESSION_SECONDS, path="/")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("", max_length=256)):
        found = page_session(request)
        if found is None or not auth.csrf_ok(found[1], csrf):
            raise HTTPException(403, "missing or wrong csrf token")
        auth.end_session(queue().db, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def review_page(request: Request):
        found = page_session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        reviewer, csrf = found
        return templates.TemplateResponse(request, "review.html", {
            "reviewer": reviewer, "csrf": csrf, "reasons": REASONS, "guidelines": list(guidelines),
            "guideline_version": guideline_version()})

    @app.get("/adjudicate", response_class=HTMLResponse)
    def adjudicate_page(request: Request):
        found = page_session(request)
        if found is None:
            return RedirectResponse("/login", status_code=303)
        reviewer, csrf = found
        if not reviewer.is_admin:
            raise HTTPException(403, "admins only")
        return templates.TemplateResponse(request, "adjudicate.html", {
            "reviewer": reviewer, "csrf": csrf, "reasons": REASONS})

    @app.get("/guidelines/{name}", response_class=HTMLResponse)
    def guideline_page(request: Request, name: str):
        if page_session(request) is None:
            api_user(request)  # a Bearer token works too; else 401
        path = guidelines.get(name)
        if path is None:
            raise HTTPException(404, "no such guideline")
        return templates.TemplateResponse(request, "guideline.html", {
            "name": name, "text": path.read_text(encoding="utf-8"), "guidelines": list(guidelines)})

    @app.get("/static/{name}")
    def static_file(request: Request, name: str):
        if page_session(request) is None:
            raise _unauthorized()
        path = static.get(name)
        if path is None:
            raise HTTPException(404, "not found")
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "private, max-age=60"})

    # -- API -------------------------------------------------------------------------------
    @app.post("/api/next")
    def api_next(reviewer: Reviewer = Depends(api_user)):
        item = queue().next_item(reviewer)
        if item is None:
            return Response(status_code=204)
        return item

    def media(key: str, which: str) -> Response:
        record = queue().catalog.get(checked_key(key))
        if record is None:
            raise HTTPException(404, "not found")
        ref = record.image if which == "image" else record.mask
        if ref is None:
            raise HTTPException(404, "no mask")
        fmt = record.image_format if which == "image" else "png"
        data = store.read(ref)
        return Response(data, media_type="image/jpeg" if fmt == "jpeg" else "image/png",
                        headers={"Cache-Control": "private, max-age=3600", "ETag": f'"{ref}"'})

    @app.get("/api/items/{key:path}/image")
    def api_image(key: str, _reviewer: Reviewer = Depends(api_user)):
        return media(key, "image")

    @app.get("/api/items/{key:path}/mask")
    def api_mask(key: str, _reviewer: Reviewer = Depends(api_user)):
        return media(key, "mask")

    @app.post("/api/items/{key:path}/review")
    def api_review(key: str, body: ReviewBody, reviewer: Reviewer = Depends(api_user)):
        checked_key(key)
        if body.decision not in DECISIONS:
            raise Invalid(f"decision must be one of {', '.join(DECISIONS)}")
        spent = body.time_spent_ms / 1000.0 if body.time_spent_ms is not None else None
        result = queue().submit(reviewer, key, body.decision, body.version, caption=body.caption,
                                reason=body.reason, labels=body.labels, time_spent=spent, note=body.note)
        stats_cache["at"] = 0.0
        return result

    @app.post("/api/items/{key:path}/adjudicate")
    def api_adjudicate(key: str, body: ReviewBody, admin: Reviewer = Depends(admin_user)):
        checked_key(key)
        result = queue().adjudicate(admin, key, body.decision, body.version, caption=body.caption,
                                    reason=body.reason, labels=body.labels)
        stats_cache["at"] = 0.0
        return result

    @app.post("/api/items/{key:path}/check")
    def api_check(key: str, body: CheckBody, _reviewer: Reviewer = Depends(api_user)):
        from .queue import _checks

        record = queue().catalog.get(checked_key(key))
        if record is None:
            raise HTTPException(404, "not found")
        result = _checks(record.model_copy(update={"caption": " ".join(body.caption.split()),
                                                   "caption_source": "expert"}))
        return result or {"passed": None, "results": {}, "reasons": []}

    @app.get("/api/items/{key:path}")
    def api_item(key: str, reviewer: Reviewer = Depends(api_user)):
        q = queue()
        item = q.item(checked_key(key), with_lease=False)
        row = q.db.execute("SELECT lease_reviewer, version FROM review_queue WHERE key = ?", (key,)).fetchone()
        if row and row[0] == reviewer.id:
            item["version"] = row[1]
        if reviewer.is_admin:
            item["decisions"] = [{"reviewer": n, "decision": d, "final_caption": f, "reason": r}
                                 for n, d, f, r in q.db.execute(
                                     "SELECT v.name, d.decision, d.final_caption, d.reason FROM review_decisions d "
                                     "JOIN review_reviewers v ON v.id = d.reviewer_id WHERE d.key = ? "
                                     "ORDER BY d.event_id", (key,))]
        return item

    @app.post("/api/undo")
    def api_undo(body: UndoBody, reviewer: Reviewer = Depends(api_user)):
        result = queue().undo(reviewer, body.event_id)
        stats_cache["at"] = 0.0
        return result

    @app.get("/api/history")
    def api_history(before: Optional[int] = None, limit: int = 1, reviewer: Reviewer = Depends(api_user)):
        return {"items": queue().history(reviewer, before, limit)}

    @app.get("/api/stats")
    def api_stats(reviewer: Reviewer = Depends(api_user)):
        q = queue()
        with stats_lock:
            if stats_cache["value"] is None or time.time() - stats_cache["at"] > 2.0:
                stats_cache["value"] = q.progress()
                stats_cache["at"] = time.time()
            overall = dict(stats_cache["value"])
        since = time.time() - 86400
        n, today = q.db.execute("SELECT COUNT(*), COALESCE(SUM(at >= ?), 0) FROM review_decisions "
                                "WHERE reviewer_id = ? AND decision != 'flag'", (since, reviewer.id)).fetchone()
        mine = {"name": reviewer.name, "admin": reviewer.is_admin, "decisions": n, "last_24h": today}
        return {"overall": overall, "me": mine, "guideline_version": guideline_version()}

    @app.get("/api/adjudication")
    def api_adjudication(after: str = "", limit: int = 20, _admin: Reviewer = Depends(admin_user)):
        return {"items": queue().adjudication(after, limit)}

    @app.get("/api/guidelines")
    def api_guidelines(_reviewer: Reviewer = Depends(api_user)):
        return {"guidelines": [f"/guidelines/{name}" for name in guidelines], "version": guideline_version()}

    return app


def serve(workspace_root: Path, host: str = "127.0.0.1", port: int = 8765, lease_seconds: float = 900.0,
          secure_cookies: bool = False, log_level: str = "warning") -> None:
    import uvicorn

    app = create_app(workspace_root, lease_seconds=lease_seconds, secure_cookies=secure_cookies)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)
