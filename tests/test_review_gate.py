"""The review server's front door under attack: authentication before the body, a body limit, 4xx (never 500)
with short bodies for bad input, security headers on 500s, Origin/Host checks, idempotent retries."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from review_fixtures import login, raw_request, served_queue

from imdd_build.catalog import Catalog
from imdd_build.store import Store

pytest.importorskip("fastapi")

HUGE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with served_queue(tmp_path_factory.mktemp("review-gate")) as served:
        yield served


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_huge_unauthenticated_post_is_refused_before_its_body_is_read(env):
    # the headers promise 64 MiB; only 10 bytes follow. An answer can only come if nothing waits for the body.
    t = time.perf_counter()
    status, _, body = raw_request(env["port"], "POST", "/api/undo", {"Content-Length": str(HUGE),
                                                                       "Content-Type": "application/json"},
                                  b'{"a": "xxx', timeout=5)
    assert status == 401 and time.perf_counter() - t < 5
    assert json.loads(body)["detail"] == "missing or invalid token"
    # invalid JSON without a token is a 401 too: authentication comes before parsing
    status, _, _ = raw_request(env["port"], "POST", "/api/undo", {"Content-Length": "5",
                                                                    "Content-Type": "application/json"}, b"{nope")
    assert status == 401


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_an_unauthenticated_64_mib_json_body_costs_the_server_no_memory(env):
    def peak_mib() -> float:
        status = Path(f"/proc/{env['server'].proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024

    before = peak_mib()
    payload = b'{"event_id": 1, "pad": "' + b"x" * (HUGE - 40) + b'"}'
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(f"POST /api/undo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(payload)}\r\n\r\n".encode())
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server answered and closed without reading: what we want
        answer = s.recv(200)
    assert answer.startswith(b"HTTP/1.1 401")
    assert peak_mib() - before < 32, (before, peak_mib())  # the 64 MiB were never held, let alone parsed


def test_bodies_over_64_kib_get_413_unread(env):
    headers = {**bearer(env["tokens"]["bob"]), "Content-Type": "application/json"}
    status, _, body = raw_request(env["port"], "POST", "/api/undo", {**headers, "Content-Length": str(HUGE)},
                                  b"{", timeout=5)
    assert status == 413 and len(body) < 100
    # a chunked body that does not say its size is cut off at the limit
    chunk = b"[" + b"1," * 40000
    wire = b"".join(f"{len(chunk[i:i + 8192]):x}\r\n".encode() + chunk[i:i + 8192] + b"\r\n"
                    for i in range(0, len(chunk), 8192))
    status, _, _ = raw_request(env["port"], "POST", "/api/undo", {**headers, "Transfer-Encoding": "chunked"},
                               wire, timeout=5)
    assert status == 413


BAD_BODIES = [
    ("/api/undo", {"event_id": 2 ** 70}),
    ("/api/undo", {"event_id": -(2 ** 70)}),
    ("/api/undo", {"event_id": 1e23}),
    ("/api/undo", {"event_id": "\ud800"}),
    ("/api/items/{key}/review", {"decision": "edit", "version": "v", "caption": "A \ud800 caption."}),
    ("/api/items/{key}/review", {"decision": "\ud800", "version": "v"}),
    ("/api/items/{key}/review", {"decision": "flag", "version": "v", "note": "\ud800"}),
    ("/api/items/{key}/review", {"decision": "edit", "version": "v", "caption": "x" * 60000}),
    ("/api/items/{key}/review", {"decision": "accept", "version": "v", "time_spent_ms": 1e308}),
    ("/api/items/{key}/review", {"decision": "reject", "version": "v", "reason": "wrong_defect_label",
                                 "labels": {"label": "defective", "defect_types": ["\ud800" * 100]}}),
    ("/api/items/{key}/review", {"decision": "accept", "version": 2 ** 70}),
    ("/api/items/{key}/check", {"caption": "\ud800"}),
]


@pytest.mark.parametrize("path,body", BAD_BODIES)
def test_bad_input_gets_a_short_4xx_that_does_not_echo_it(env, path, body):
    with env["server"].client(env["tokens"]["bob"]) as c:
        item = c.post("/api/next").json()
        if body.get("version") == "v":
            body = {**body, "version": item["version"]}
        data = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes
        r = c.post(path.format(key=item["key"]), content=data, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
    assert len(r.content) < 300 and "ud800" not in r.text and "xxxx" not in r.text
    assert r.json()["detail"]


@pytest.mark.parametrize("query", ["before=1e23", "before=100000000000000000000000", "before=-1",
                                   "limit=100000000000000000000000", "limit=0"])
def test_bad_query_numbers_get_422(env, query):
    with env["server"].client(env["tokens"]["bob"]) as c:
        r = c.get("/api/history?" + query)
    assert r.status_code == 422 and len(r.content) < 300 and "1000000" not in r.text


@pytest.mark.parametrize("payload", [b"{nope", b"[" * 30000 + b"]" * 30000, b"\xff\xfe\x00", b"1" * 5000])
def test_bodies_that_are_not_json_get_400(env, payload):
    status, _, body = raw_request(env["port"], "POST", "/api/undo",
                                  {**bearer(env["tokens"]["bob"]), "Content-Length": str(len(payload))}, payload)
    assert status in (400, 422) and len(body) < 300


def test_500s_carry_the_security_headers_and_no_traceback(env):
    key = "demo/metal_plate/train/good/000"
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        ref = catalog.get(key).image
    path = Store(env["ws"] / "store").path(ref)
    saved = path.read_bytes()
    path.unlink()  # the store lost the image: a real server-side failure
    try:
        with env["server"].client(env["tokens"]["bob"]) as c:
            r = c.get(f"/api/items/{key}/image")
    finally:
        path.write_bytes(saved)
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error"}
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert "Traceback" in env["server"].log.read_text()  # the details go to the server's log


def test_cookie_requests_must_come_from_this_origin_and_host(env):
    server = env["server"]
    c, csrf = login(server, env["tokens"]["bob"])
    try:
        ok = c.post("/api/next", headers={"X-CSRF-Token": csrf, "Origin": server.url})
        assert ok.status_code in (200, 204)
        forged = c.post("/api/next", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert forged.status_code == 403 and "cross-origin" in forged.json()["detail"]
        assert c.post("/api/next", headers={"X-CSRF-Token": csrf, "Origin": "null"}).status_code == 403
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own name as Host
        rebound = c.get("/api/stats", headers={"Host": f"evil.example:{server.port}"})
        assert rebound.status_code == 400
        assert c.get("/login", headers={"Host": f"localhost:{server.port}"}).status_code == 200
    finally:
        c.close()


def test_an_idempotency_key_makes_a_lost_response_safe_to_retry(env):
    with env["server"].client(env["tokens"]["bob"]) as c:
        item = c.post("/api/next").json()
        body = {"decision": "accept", "version": item["version"]}
        url = f"/api/items/{item['key']}/review"
        first = c.post(url, json=body, headers={"Idempotency-Key": "retry-1"})
        assert first.status_code == 200
        again = c.post(url, json=body, headers={"Idempotency-Key": "retry-1"})  # the response was "lost"
        assert again.status_code == 200 and again.json()["event_id"] == first.json()["event_id"]
        assert again.json()["replayed"] is True
        assert c.post(url, json=body).status_code == 409  # without the key: a stale lease
        other = c.post("/api/next").json()
        reused = c.post(f"/api/items/{other['key']}/review", json={"decision": "accept", "version": other["version"]},
                        headers={"Idempotency-Key": "retry-1"})
        assert reused.status_code == 422
        assert c.post(f"/api/items/{other['key']}/review", json={"decision": "accept", "version": other["version"]},
                      headers={"Idempotency-Key": "bad key!"}).status_code == 400
    with Catalog(env["ws"] / "catalog.sqlite") as catalog:
        n = catalog.db.execute("SELECT COUNT(*) FROM review_events WHERE key = ?", (item["key"],)).fetchone()[0]
    assert n == 1  # one decision, however many retries
