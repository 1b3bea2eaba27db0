"""The console in Firefox: Debian's firefox-esr signs in and lists the devices (a smoke test;
the console's behaviour is tested in Chromium, tests/e2e/test_console.py)."""

from __future__ import annotations

import json

import pytest

from bench.firefox import firefox, firefox_missing
from bench.local_stack import Stack

from conftest import unavailable

pytestmark = pytest.mark.timeout(300)


def test_firefox_signs_in_and_lists_the_devices(stack: Stack, device_name: str) -> None:
    missing = firefox_missing()
    if missing:
        unavailable(missing)
    stack.add_sim_device(device_name)
    row = f"document.querySelector('tr[data-device={json.dumps(device_name)}]')"
    with firefox(stack.home / "logs" / "firefox.log") as page:
        page.navigate(f"http://127.0.0.1:{stack.api_port}/")
        # The page's modules ran: the token field has the focus.
        assert page.wait_until("document.activeElement && document.activeElement.id") == (
            "token-input"
        )
        page.evaluate(
            "(() => { document.getElementById('token-input').value = "
            f"{json.dumps(stack.admin_token)}; "
            "document.getElementById('sign-in').requestSubmit(); return true; })()"
        )
        presence = page.wait_until(f"{row}?.querySelector('[data-presence]')?.dataset.presence")
        assert presence == "online"
        assert page.evaluate("document.getElementById('who-role').textContent") == "admin"
        # The device's terminal: the live stream (SSE) opens, and the input line is there.
        page.evaluate(f"(() => {{ {row}.querySelector('a').click(); return true; }})()")
        assert page.wait_until("!!document.querySelector('#send-form')")
        assert page.wait_until("document.getElementById('stream-status').textContent === 'live'")
