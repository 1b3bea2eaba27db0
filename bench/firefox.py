"""Debian's Firefox ESR, driven over WebDriver BiDi, for the console's Firefox smoke test.

Playwright drives only its own patched Firefox builds, and Debian ships no geckodriver, so
Selenium cannot drive firefox-esr either. Firefox itself speaks WebDriver BiDi, the W3C
protocol, on a WebSocket (`--remote-debugging-port`): a handful of its commands (navigate,
evaluate) are all a smoke test needs, sent with websocket-client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FIREFOX = os.environ.get("HWQ_TEST_FIREFOX", "/usr/bin/firefox-esr")
# How long Firefox may take to start listening, and one command to answer, on a busy machine.
START_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0
POLL_S = 0.1
# A fresh profile that makes no connection of its own: updates, telemetry, first-run pages.
PROFILE_PREFS = {
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "remote.prefs.recommended": True,
}


def firefox_missing() -> str | None:
    """Why Firefox cannot run here, or None when it can."""
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "the websocket-client package is not installed (the dev extras)"
    if not Path(FIREFOX).exists():
        return f"no Firefox at {FIREFOX} (apt-get install firefox-esr)"
    return None


class BidiError(Exception):
    """Firefox answered a command with an error, or a script threw."""


class FirefoxPage:
    """One browsing context of a BiDi session: navigate, and evaluate expressions in it."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._next_id = 0
        self.send("session.new", {"capabilities": {}})
        tree = self.send("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]

    def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are dropped."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") != self._next_id:
                continue
            if message.get("type") == "error":
                raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
            result: dict[str, Any] = message["result"]
            return result

    def navigate(self, url: str) -> None:
        """Load a page and wait until it has loaded."""
        self.send(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a primitive: string, number, …)."""
        result = self.send(
            "script.evaluate",
            {"expression": expression, "target": {"context": self.context}, "awaitPromise": True},
        )
        if result.get("type") == "exception":
            raise BidiError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
        """Evaluate until the expression is truthy, and return its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout_s:g} s: {expression}")
            time.sleep(POLL_S)


@contextmanager
def firefox(log_path: Path) -> Iterator[FirefoxPage]:
    """A headless Firefox on a fresh profile, ended when the block ends; its output to log_path."""
    import websocket

    from hwq.embedded_redis import free_port

    profile = Path(tempfile.mkdtemp(prefix="hwq-firefox-"))
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PROFILE_PREFS.items())
    )
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", str(profile),
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                # No Origin header: Firefox refuses a WebSocket that claims to come from a page.
                socket = websocket.create_connection(
                    f"ws://127.0.0.1:{port}/session",
                    timeout=COMMAND_TIMEOUT_S,
                    suppress_origin=True,
                )
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            page = FirefoxPage(socket)
            yield page
            page.send("session.end", {})
        finally:
            socket.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)
