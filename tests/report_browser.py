"""Open a report in headless Chromium (Debian's package) through Playwright: console messages,
network requests, dialogs and a full-page screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    pytest.skip("no Chromium on this machine (apt-get install chromium)")


def open_in_browser(html_file: Path, screenshot: Path, width: int = 1280) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api")
    out = {"console": [], "requests": [], "dialogs": [], "page_errors": []}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: out["console"].append((m.type, m.text)))
            page.on("request", lambda r: out["requests"].append(r.url))
            page.on("pageerror", lambda e: out["page_errors"].append(str(e)))

            def on_dialog(d):
                out["dialogs"].append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            page.goto(html_file.resolve().as_uri())
            page.wait_for_load_state("load")
            out["text"] = page.inner_text("body")
            out["scripts"] = page.locator("script").count()
            out["images"] = page.locator("img").count()
            out["js_links"] = page.locator("a[href^='javascript:']").count()
            out["svgs"] = page.locator("svg").count()
            out["scroll_width"] = page.evaluate("document.documentElement.scrollWidth")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return out
