"""The browser side of the console's tests: a signed-in page that records what went wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

# Generous: a busy two-core machine runs several stacks at once.
UI_TIMEOUT_MS = 30_000
POLL_S = 0.05


@dataclass
class ConsolePage:
    """A page on the console, with every script error and refused resource it met."""

    page: Page
    origin: str
    problems: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser, origin: str) -> ConsolePage:
        """A new tab of its own (its own sessionStorage) on the console's page."""
        context = browser.new_context()
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        opened = cls(page, origin)
        page.on("pageerror", lambda error: opened.problems.append(f"script error: {error}"))
        page.on("console", opened._note)
        page.goto(origin + "/")
        return opened

    def _note(self, message: ConsoleMessage) -> None:
        # A refused request the page expects (a 404 it reports itself) is logged as an error
        # too; a script error or a policy violation never is expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")

    def sign_in(self, token: str) -> None:
        """Type the token and press Enter, as a keyboard user would."""
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_label("Token").press("Enter")
        self.page.locator("#who").wait_for(state="visible")

    def wait_until(self, script: str, arg: object = None) -> object:
        """Poll a function in the page until it returns something truthy, and return that.

        Not Playwright's wait_for_function: its polling evaluates strings inside the page,
        which the console's Content-Security-Policy rightly refuses.
        """
        deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
        while True:
            result = self.page.evaluate(script, arg)
            if result or time.monotonic() > deadline:
                assert result, f"still false after {UI_TIMEOUT_MS} ms: {script}"
                return result
            time.sleep(POLL_S)

    def go(self, hash_path: str) -> None:
        """Open a view by its address (#/devices, #/device/NAME, …)."""
        self.page.evaluate("path => { location.hash = path; }", hash_path)

    def close(self) -> None:
        """Close the tab and its context."""
        self.page.context.close()
