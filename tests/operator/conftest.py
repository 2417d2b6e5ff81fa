"""Fixtures for the operator's surfaces: a headless Debian Chromium (driven by Playwright, never a
browser of Playwright's own: ``./scripts/test`` installs ``chromium``), pages that record console
errors and every request, and refuse any that would leave loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support import Server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
]  # fmt: skip
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module, not per session: Playwright's sync API keeps an event loop running in the
    test thread while it is open, and tests of other modules call asyncio.run there."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), (
        "Debian's chromium is not installed: ./scripts/test installs it (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


@dataclass
class Tab:
    """A browser page with what it did: console errors, page errors, requests, refused requests."""

    page: Any
    context: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def check_clean(self) -> None:
        assert self.refused == [], f"requests that would have left loopback: {self.refused}"
        assert self.errors == [], f"console errors: {self.errors}"
        hosts = {urlsplit(u).hostname for u in self.requests if not u.startswith(("data:", "about:"))}
        assert hosts <= LOOPBACK, hosts


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    def make(viewport: dict[str, int] | None = None) -> Tab:
        context = browser.new_context(
            ignore_https_errors=True, viewport=viewport or {"width": 1280, "height": 900}
        )
        opened.append(context)
        page = context.new_page()
        t = Tab(page, context)
        page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: t.errors.append(f"page error: {e}"))

        def route(r: Any) -> None:
            url = r.request.url
            t.requests.append(url)
            if url.startswith(("data:", "about:")) or urlsplit(url).hostname in LOOPBACK:
                r.continue_()
            else:
                t.refused.append(url)
                r.abort()

        context.route("**/*", route)
        return t

    opened: list[Any] = []
    yield make
    for context in opened:
        context.close()


def dashboard_url(server: Server, *extra: str) -> str:
    """``dpvault dashboard-url`` as an operator runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "dpvault", "dashboard-url", "--data-dir", str(server.data_dir), *extra],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip()
