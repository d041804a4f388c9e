"""Pages: login and logout, the review and adjudication pages, the guidelines, static files, favicon."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .. import auth
from ..common import REASONS, Reviewer, guideline_version
from ..context import LOGIN_CSRF_COOKIE, SESSION_COOKIE, STATIC_TYPES, api_user, context, page_session, refused, \
    unauthorized
from ..gate import Refusal, log

router = APIRouter()


def login_form(request: Request, status: int = 200, error: Optional[str] = None) -> Response:
    """The login page with a fresh login CSRF token (also set as a cookie scoped to /login)."""
    ctx = context(request)
    token = auth.secrets.token_urlsafe(24)
    response = ctx.templates.TemplateResponse(request, "login.html", {"csrf": token, "error": error},
                                              status_code=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=ctx.secure_cookies,
                        max_age=3600, path="/login")
    return response


@router.get("/favicon.ico")
def favicon():
    return Response(status_code=204)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return login_form(request)


@router.post("/login")
def login(request: Request, token: str = Form(..., max_length=256), csrf: str = Form(..., max_length=256)):
    ctx = context(request)
    client = request.client.host if request.client else "unknown"
    wait = ctx.throttle.retry_after(client)
    if wait:
        log.warning("login from %s refused: too many failed logins (retry in %.0f s)", client, wait)
        response = login_form(request, 429, "Too many failed logins; wait a few minutes.")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    if not auth.csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE) or "", csrf):
        return login_form(request, 403, "The form expired; try again.")
    reviewer = auth.verify_token(ctx.queue().db, token.strip())
    if reviewer is None:
        n = ctx.throttle.failed(client)
        log.warning("failed login from %s (%d in the last %.0f s)", client, n, ctx.throttle.window)
        return login_form(request, 401, "Unknown token.")
    sid, _csrf = auth.create_session(ctx.queue().db, reviewer)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", secure=ctx.secure_cookies,
                        max_age=auth.SESSION_SECONDS, path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("", max_length=256)):
    found = page_session(request)
    if found is None or not auth.csrf_ok(found[1], csrf):
        raise HTTPException(403, "missing or wrong csrf token")
    auth.end_session(context(request).queue().db, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _page(request: Request, template: str, admin: bool = False, **extra) -> Response:
    """A page for the logged-in reviewer (the login page without a session; 403 for a non-admin on an admin page)."""
    found = page_session(request)
    if found is None:
        return RedirectResponse("/login", status_code=303)
    reviewer, csrf = found
    if admin and not reviewer.is_admin:
        raise HTTPException(403, "admins only")
    return context(request).templates.TemplateResponse(request, template, {
        "reviewer": reviewer, "csrf": csrf, "reasons": REASONS, **extra})


@router.get("/", response_class=HTMLResponse)
def review_page(request: Request):
    return _page(request, "review.html", guidelines=list(context(request).guidelines),
                 guideline_version=guideline_version())


@router.get("/adjudicate", response_class=HTMLResponse)
def adjudicate_page(request: Request):
    return _page(request, "adjudicate.html", admin=True)


@router.get("/guidelines/{name}", response_class=HTMLResponse)
def guideline_page(request: Request, name: str):
    ctx = context(request)
    if page_session(request) is None:
        try:  # a Bearer token works too; else 401
            ctx.authenticate(request.headers, request.method)
        except Refusal as refusal:
            raise refused(refusal) from None
    path = ctx.guidelines.get(name)
    if path is None:
        raise HTTPException(404, "no such guideline")
    return ctx.templates.TemplateResponse(request, "guideline.html", {
        "name": name, "text": path.read_text(encoding="utf-8"), "guidelines": list(ctx.guidelines)})


@router.get("/static/{name}")
def static_file(request: Request, name: str):
    if page_session(request) is None:
        raise unauthorized()
    path = context(request).static.get(name)
    if path is None:
        raise HTTPException(404, "not found")
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                    headers={"Cache-Control": "private, max-age=60"})


@router.get("/api/guidelines")
def api_guidelines(request: Request, _reviewer: Reviewer = Depends(api_user)):
    return {"guidelines": [f"/guidelines/{name}" for name in context(request).guidelines],
            "version": guideline_version()}
