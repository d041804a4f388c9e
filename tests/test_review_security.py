"""Refusals: no token, wrong token, path-traversal keys, stale versions, CSRF, sessions, token storage."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import Cli
from review_fixtures import add_reviewer, raw_get, served_queue

pytest.importorskip("fastapi")

KEY = "demo/metal_plate/test/scratch/000"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with served_queue(tmp_path_factory.mktemp("review-sec")) as served:
        yield served


ROUTES = [("POST", "/api/next", None), ("GET", f"/api/items/{KEY}", None), ("GET", f"/api/items/{KEY}/image", None),
          ("GET", f"/api/items/{KEY}/mask", None), ("POST", f"/api/items/{KEY}/review", {"decision": "accept",
                                                                                         "version": 1}),
          ("POST", f"/api/items/{KEY}/check", {"caption": "x"}), ("POST", "/api/undo", {}),
          ("GET", "/api/history", None), ("GET", "/api/stats", None), ("GET", "/api/adjudication", None),
          ("GET", "/api/guidelines", None), ("POST", f"/api/items/{KEY}/adjudicate", {"decision": "accept",
                                                                                       "version": 1})]


@pytest.mark.parametrize("method,path,body", ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Bearer x", "Basic YWxpY2U6eA==", "token-without-scheme"])
def test_every_api_route_needs_a_valid_token(env, method, path, body, auth):
    headers = {"Authorization": auth} if auth else {}
    with env["server"].client() as c:
        r = c.request(method, path, json=body, headers=headers)
    assert r.status_code == 401, (path, auth, r.status_code, r.text)
    assert r.headers.get("www-authenticate") == "Bearer"
    assert b"PNG" not in r.content and b"JFIF" not in r.content


def test_pages_redirect_to_login_and_static_files_need_a_session(env):
    with env["server"].client() as c:
        for path in ("/", "/adjudicate"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/static/review.js").status_code == 401
        assert c.get("/guidelines/reviewer_guide").status_code == 401
        login = c.get("/login")
        assert login.status_code == 200 and "Content-Security-Policy" in login.headers
        assert login.headers["x-frame-options"] == "DENY"


TRAVERSAL = [
    "/api/items/../../etc/passwd/image",
    "/api/items/..%2F..%2Fetc%2Fpasswd/image",
    "/api/items/%2e%2e/%2e%2e/etc/passwd/image",
    "/api/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
    "/api/items/%252e%252e%252fetc%252fpasswd/image",
    "/api/items/demo/..%2F..%2F..%2Fcatalog.sqlite/image",
    "/api/items/demo/metal_plate/test/scratch/000/../../../../../../etc/passwd/mask",
    "/api/items/..\\..\\etc\\passwd/image",
    "/api/items/%00/image",
    "/api/items/demo%2Fmetal_plate%2F..%2F..%2Fstore/image",
    "/api/items/../../etc/passwd",
    "/api/items/..%2F..%2Fetc%2Fpasswd/review",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_path_traversal_keys_are_refused(env, path):
    port = env["server"].port
    status, body = raw_get(port, path, env["tokens"]["alice"])
    assert status == 400, (path, status, body[:200])  # the key fails [a-z0-9_/-]: nothing is looked up
    assert b"root:" not in body and b"SQLite format" not in body
    status, body = raw_get(port, path, None)
    assert status == 401 and b"root:" not in body  # authentication comes first
    if path.endswith("/review"):
        with env["server"].client(env["tokens"]["alice"]) as c:
            r = c.post(path, json={"decision": "accept", "version": "x"})
        assert r.status_code in (400, 404)


def test_unknown_and_malformed_keys(env):
    with env["server"].client(env["tokens"]["bob"]) as c:
        assert c.get("/api/items/demo/nope/image").status_code == 404
        assert c.get("/api/items/Demo/UPPER/image").status_code == 400
        assert c.get("/api/items/demo/a.b/image").status_code == 400
        r = c.post("/api/items/demo/nope/review", json={"decision": "accept", "version": "x"})
        assert r.status_code == 404
        normal = "demo/metal_plate/train/good/000"
        assert c.get(f"/api/items/{normal}/mask").status_code == 404  # no mask: nothing served


def test_stale_versions_and_foreign_leases_are_refused(env):
    with env["server"].client(env["tokens"]["bob"]) as bob, env["server"].client(env["tokens"]["alice"]) as alice:
        item = bob.post("/api/next").json()
        key, version = item["key"], item["version"]
        for v in (version[:-1], version + "0", "", "1", "2"):
            r = bob.post(f"/api/items/{key}/review", json={"decision": "accept", "version": v})
            assert r.status_code == 409 and "stale" in r.json()["detail"]
        for v in (1, 2, None, ["x"]):  # integer versions are gone: the token is opaque
            assert bob.post(f"/api/items/{key}/review", json={"decision": "accept", "version": v}).status_code == 422
        r = alice.post(f"/api/items/{key}/review", json={"decision": "accept", "version": version})
        assert r.status_code == 409
        assert alice.post(f"/api/items/{key}/adjudicate", json={"decision": "accept", "version": version}).status_code == 409
        r = bob.post(f"/api/items/{key}/review", json={"decision": "accept", "version": version})
        assert r.status_code == 200
        r = bob.post(f"/api/items/{key}/review", json={"decision": "accept", "version": version})
        assert r.status_code == 409


def test_cookie_session_needs_csrf_and_login_needs_the_form_token(env):
    server = env["server"]
    with server.client() as c:
        form = c.get("/login")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        bad = c.post("/login", data={"token": "nope", "csrf": csrf})
        assert bad.status_code == 401 and "imdd_session" not in bad.cookies
        c.get("/login")
        forged = c.post("/login", data={"token": env["tokens"]["bob"], "csrf": "forged"})
        assert forged.status_code == 403
        form = c.get("/login")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        ok = c.post("/login", data={"token": env["tokens"]["bob"], "csrf": csrf})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        page = c.get("/")
        assert page.status_code == 200 and 'name="csrf-token"' in page.text
        session_csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        assert c.get("/api/stats").status_code == 200  # GET with the cookie
        assert c.post("/api/next").status_code == 403  # POST without the CSRF header
        assert c.post("/api/next", headers={"X-CSRF-Token": "wrong"}).status_code == 403
        assert c.post("/api/next", headers={"X-CSRF-Token": session_csrf}).status_code in (200, 204)
        assert c.get("/static/review.js").status_code == 200
        assert c.get("/static/../queue.py").status_code == 404
        assert c.get("/guidelines/reviewer_guide").status_code == 200
        assert c.get("/guidelines/..%2Fpyproject").status_code == 404
        assert c.get("/adjudicate").status_code == 403  # bob is no admin
        out = c.post("/logout", data={"csrf": session_csrf})
        assert out.status_code == 303
        c.cookies.clear()
        assert c.get("/api/stats").status_code == 401


def test_tokens_are_stored_hashed_and_can_be_revoked(env):
    ws = env["ws"]
    db = sqlite3.connect(ws / "catalog.sqlite")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    for token in env["tokens"].values():
        assert token not in dump
    token = add_reviewer(ws, "mallory")
    with env["server"].client(token) as c:
        assert c.get("/api/stats").status_code == 200
        Cli(ws)("review", "revoke-reviewer", "mallory")
        assert c.get("/api/stats").status_code == 401
    Cli(ws)("review", "add-reviewer", "bad name!", expect=2)
