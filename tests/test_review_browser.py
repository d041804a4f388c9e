"""End to end in Debian's headless Chromium, driven by Playwright's Python package (never its own browser):
login, accept by key, edit, reject, undo, overlay toggle, help, previous/next; then the catalog is checked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import Cli
from review_fixtures import BROKEN_KEY, ReviewServer, add_reviewer, review_workspace

from imdd_build.catalog import Catalog

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                             "(pip install 'imdd[test]')")
pytest.importorskip("fastapi")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
                allow_module_level=True)


def record(ws, key):
    with Catalog(ws / "catalog.sqlite") as catalog:
        return catalog.get(key)


def test_review_page_end_to_end(tmp_path):
    ws = review_workspace(tmp_path)
    Cli(ws)("review", "enqueue", "--sample-rate", "0.2", "--double-rate", "0")
    token = add_reviewer(ws, "inspector")
    shot = tmp_path / "review-page.png"
    with ReviewServer(ws) as server, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(server.url + "/")
            assert page.url.endswith("/login")
            page.fill("#token", "wrong")
            page.click("#login-button")
            assert "Unknown token" in page.inner_text("#login-error")
            page.fill("#token", token)
            page.click("#login-button")
            page.wait_for_selector("body[data-ready='1']")
            console_errors.clear()  # the refused login above logs its 401
            body = page.locator("body")

            def key() -> str:
                return body.get_attribute("data-key")

            def wait_key_change(old: str) -> str:
                page.wait_for_function("(k) => document.body.dataset.key !== k", arg=old)
                return key()

            # 1. the failed draft comes first; fix it with e, typing, Ctrl+Enter
            k1 = key()
            assert k1 == BROKEN_KEY
            assert "FAILED" in page.inner_text("#checks")
            assert page.input_value("#caption") == "Nice picture of a plate."
            page.wait_for_function("() => document.querySelector('#image').naturalWidth === 512")
            page.wait_for_function("() => document.querySelector('#overlay').dataset.drawn === '1'")
            page.screenshot(path=str(shot), full_page=True)  # a defective item with its mask overlay
            page.keyboard.press("e")
            assert page.evaluate("document.activeElement.id") == "caption"
            edited = ("An industrial inspection image of a metal plate with one thin scratch defect in the center "
                      "right area, a single elongated mark over well under one percent of the surface, a minor "
                      "defect, while the rest of the plate looks intact and uniform.")
            page.fill("#caption", edited)
            page.wait_for_selector("#live-checks div")  # the edited text is checked as it is typed
            page.keyboard.press("Control+Enter")
            k2 = wait_key_change(k1)

            # 2. accept by key
            draft2 = page.input_value("#caption")
            page.keyboard.press("a")
            k3 = wait_key_change(k2)

            # 3. reject with a reason by key (r, then 3 = bad_image)
            page.keyboard.press("r")
            assert page.is_visible("#reasons")
            page.keyboard.press("3")
            k4 = wait_key_change(k3)
            assert record(ws, k3).caption_status == "rejected"

            # 4. undo brings k3 back and restores its draft in the catalog
            page.keyboard.press("u")
            page.wait_for_function("(k) => document.body.dataset.key === k", arg=k3)
            assert record(ws, k3).caption_status == "draft"
            assert "undone" in page.inner_text("#message")
            # decide it again: reject as wrong mask (r, 2)
            page.keyboard.press("r")
            page.keyboard.press("2")
            k5 = wait_key_change(k3)
            assert k5 == k4  # the item leased before the undo is still ours

            # 5. overlay toggle, zoom, help overlay
            assert body.get_attribute("data-overlay") == "on" and page.is_visible("#overlay")
            page.keyboard.press("o")
            assert body.get_attribute("data-overlay") == "off" and not page.is_visible("#overlay")
            page.keyboard.press("o")
            assert body.get_attribute("data-overlay") == "on" and page.is_visible("#overlay")
            page.keyboard.press("+")
            assert page.inner_text("#zoom-level") == "125%"
            page.keyboard.press("0")
            page.keyboard.press("?")
            assert page.is_visible("#help")
            page.keyboard.press("Escape")
            assert not page.is_visible("#help")

            # 6. previous shows my last decision read-only; n goes back to the current item
            page.keyboard.press("p")
            page.wait_for_function("() => document.body.dataset.mode === 'history'")
            assert key() == k3 and "reject" in page.inner_text("#mode")
            assert page.get_attribute("#caption", "readonly") is not None
            page.keyboard.press("a")  # ignored while looking back
            assert "go back to the queue" in page.inner_text("#message")
            page.keyboard.press("n")
            page.wait_for_function("() => document.body.dataset.mode === 'review'")
            assert key() == k5
            page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('you: 3')")
            assert page.get_attribute("#guidelines-link", "href") == "/guidelines/reviewer_guide"

            with page.expect_popup() as popup:  # g: the guidelines, one key away
                page.keyboard.press("g")
            guide = popup.value
            guide.wait_for_load_state()
            assert "Reviewer guide (version 1)" in guide.inner_text("#guideline-text")
            assert not console_errors, console_errors
        finally:
            browser.close()

    r1, r2, r3 = record(ws, k1), record(ws, k2), record(ws, k3)
    assert r1.caption == edited and r1.caption_source == "expert" and r1.caption_status == "verified"
    assert r1.caption_meta["review"]["reviewers"] == ["inspector"] and r1.caption_meta["checks"]["passed"] in (True, False)
    assert r2.caption == draft2 and r2.caption_status == "verified" and r2.caption_source == "template"
    assert r3.caption_status == "rejected" and r3.caption_meta["review"]["reason"] == "wrong_mask"
    assert record(ws, k5).caption_status == "draft"
    assert shot.exists() and shot.stat().st_size > 10_000
    artifacts = os.environ.get("IMDD_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
