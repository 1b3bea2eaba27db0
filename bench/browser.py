"""The system's Chromium under Playwright, for the console's tests and its first-load benchmark.

Playwright never downloads a browser here: it drives Debian's `chromium` package, started with
a fresh profile and with every background connection off (a closed network refuses them, and
they would only add noise to what is measured).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# Debian's chromium; HWQ_TEST_CHROMIUM points elsewhere (another build, or chromium on a Mac).
CHROMIUM = os.environ.get("HWQ_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (the dev extras)"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed when the block ends.

    Playwright gives each launch a fresh temporary profile (its --user-data-dir) and removes it
    afterwards; it refuses one passed in `args`.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()
