"""The review app's front door: a plain ASGI middleware that runs before FastAPI touches a request.

In order, for every HTTP request:

1. `Host` must name this server (when the app was given its host names: loopback binds are, so a
   DNS-rebinding page cannot talk to it), and a state-changing request that carries a cookie must
   come from the same origin (`Origin`, when the browser sends one, equals the `Host`).
2. `/api/` requests are authenticated from their headers alone (Bearer token, or session cookie with
   its CSRF header) before a byte of the body is read: no token, no reading.
3. A declared body over `max_body` is refused with 413 without reading it; an undeclared (chunked)
   one is read only up to `max_body`.
4. The body of an `/api/` request is parsed as JSON in a worker thread, never on the event loop;
   invalid JSON is a short 400. Endpoints take the parsed value from `request.state.json`.
5. Every response, 500s included, carries the security headers; an unexpected error becomes a short
   `500 internal error` (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Optional
from urllib.parse import urlsplit

import anyio
from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers, MutableHeaders

log = logging.getLogger("imdd.review")

MAX_BODY = 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
# same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` on form posts, which the
# same-origin check below must refuse; same-origin still sends nothing to other sites.
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class Refusal(Exception):
    """A request refused before it reaches a route: status, a short detail, extra headers."""

    def __init__(self, status: int, detail: str, headers: Optional[dict[str, str]] = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def host_name(value: str) -> str:
    """The host part of a `Host` header or URL netloc (no port, brackets kept off IPv6), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Gate:
    """The middleware (see the module docstring). `authenticate(headers, method)` returns the reviewer or
    raises `Refusal`; it runs in a worker thread because it reads the catalog."""

    def __init__(self, app, authenticate: Callable[[Headers, str], Any], cookie_names: Iterable[str],
                 allowed_hosts: Optional[Iterable[str]] = None, max_body: int = MAX_BODY):
        self.app = app
        self.authenticate = authenticate
        self.cookie_names = tuple(cookie_names)
        self.allowed_hosts = {host_name(h) for h in allowed_hosts} if allowed_hosts is not None else None
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        try:
            receive = await self._admit(scope, receive)
            await self.app(scope, receive, send_with_headers)
        except Refusal as refusal:
            if not started:
                await self._reply(send_with_headers, refusal.status, refusal.detail, refusal.headers)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), repr(scope.get("path", ""))[:200])
            if not started:
                await self._reply(send_with_headers, 500, "internal error")

    async def _admit(self, scope, receive):
        """Checks 1-4; returns the `receive` the app gets (replaying the body read here)."""
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        host = headers.get("host", "")
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            raise Refusal(400, "unknown Host")
        cookies = headers.get("cookie", "")
        if method in _BODY_METHODS and any(f"{name}=" in cookies for name in self.cookie_names):
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
                raise Refusal(403, "cross-origin request refused")
        api = path.startswith("/api/")
        if api:
            reviewer = await anyio.to_thread.run_sync(self.authenticate, headers, method)
            scope.setdefault("state", {})["reviewer"] = reviewer
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Refusal(400, "invalid Content-Length")
            if int(declared) > self.max_body:
                raise Refusal(413, f"request body over {self.max_body // 1024} KiB")
        if method not in _BODY_METHODS:
            return receive
        body = await self._read(receive)
        if api and body.strip():
            scope.setdefault("state", {})["json"] = await anyio.to_thread.run_sync(_parse_json, body)
        return _replay(body, receive)

    async def _read(self, receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refusal(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise Refusal(413, f"request body over {self.max_body // 1024} KiB")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _reply(send, status: int, detail: str, headers: Optional[dict[str, str]] = None) -> None:
        body = json.dumps({"detail": detail}).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        if status in (400, 413, 500):
            raw.append((b"connection", b"close"))  # an unread body may follow on the wire
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _parse_json(body: bytes) -> Any:
    """The parsed body (None when empty); a short 400 for anything that is not JSON (deep nesting too)."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Refusal(400, "the body is not valid JSON") from None


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body read here, then the connection's own (its disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def short_errors(errors: list[dict]) -> str:
    """A validation failure in a few words: field names and error kinds, never the input itself."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        loc = loc if re.fullmatch(r"[A-Za-z0-9_.\[\]]{1,60}", loc) else "field"
        parts.append(f"{loc} ({e.get('type', 'invalid')})")
    return "invalid " + ", ".join(parts or ["request"])


def parsed(request: Request, model: type[BaseModel]) -> Any:
    """The gate's parsed JSON body validated as `model` (in the worker thread); short 422 when it is not."""
    data = getattr(request.state, "json", None)
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise HTTPException(422, short_errors(exc.errors(include_input=False))) from None
