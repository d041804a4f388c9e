"""Failed logins are logged (never the token) and slowed after a few; the catalog is private to its owner."""

from __future__ import annotations

import stat

import pytest
from conftest import Cli
from review_fixtures import ReviewServer, add_reviewer, review_workspace

pytest.importorskip("fastapi")


def form_login(c, token: str):
    form = c.get("/login")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    return c.post("/login", data={"token": token, "csrf": csrf})


def test_failed_logins_are_logged_and_repeated_ones_refused(tmp_path):
    ws = review_workspace(tmp_path)
    token = add_reviewer(ws, "bob")
    with ReviewServer(ws) as server, server.client() as c:
        guesses = [f"guess-{i}-secret" for i in range(5)]
        for guess in guesses:
            assert form_login(c, guess).status_code == 401
        blocked = form_login(c, token)  # even the right token waits now
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert "imdd_session" not in blocked.cookies
        # API tokens keep working: only the login form is slowed
        with server.client(token) as api:
            assert api.get("/api/stats").status_code == 200
        log = server.log.read_text()
    assert log.count("failed login from 127.0.0.1") == 5 and "(5 in the last 300 s)" in log
    assert "too many failed logins" in log
    assert not any(g in log for g in guesses) and token not in log


def test_the_catalog_is_readable_by_its_owner_only(tmp_path):
    ws = review_workspace(tmp_path)
    catalog = ws / "catalog.sqlite"
    catalog.chmod(0o644)
    Cli(ws)("review", "enqueue")
    add_reviewer(ws, "bob")
    for path in ws.glob("catalog.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    catalog.chmod(0o644)
    with ReviewServer(ws):
        assert stat.S_IMODE(catalog.stat().st_mode) == 0o600
