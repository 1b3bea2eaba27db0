"""The console as a keyboard user and each role meet it: focus, Tab order, Enter, what each
role is offered, and devices that poll over HTTP, in a real Chromium against a real stack."""

# The fixtures `browser` and `console` come from test_console; the tests name them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from test_console import browser, console  # noqa: F401  (the browser and its tab, as fixtures)
from test_http_poll import poll_device

from bench.local_stack import Stack

from console_page import ConsolePage

pytestmark = pytest.mark.timeout(300)

# Where the focused element is and whether it shows so: the focus ring is an outline.
FOCUSED = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  return { tag: e.tagName.toLowerCase(), id: e.id, label: e.labels && e.labels[0] ?
    e.labels[0].textContent : e.textContent.trim(), outline: style.outlineStyle,
    width: parseFloat(style.outlineWidth) };
}"""
MAX_TABS = 30


def _tab_to(tab: ConsolePage, label: str) -> list[dict[str, object]]:
    """Press Tab until the control labelled `label` has the focus; what got it on the way."""
    passed = []
    for _ in range(MAX_TABS):
        tab.page.keyboard.press("Tab")
        focused = tab.page.evaluate(FOCUSED)
        passed.append(focused)
        if focused["label"] == label:
            return passed
    raise AssertionError(f"Tab never reached {label!r}; it went {passed}")


def test_an_operator_works_a_device_with_the_keyboard_alone(
    console: ConsolePage,
    stack: Stack,
    device_name: str,
) -> None:
    stack.add_sim_device(device_name)
    operator = stack.hwq("token", "create", "--role", "operator", "--name", "kb").strip()
    page = console.page
    # The token field has the focus on arrival; typing and Enter sign in.
    expect(page.get_by_label("Token")).to_be_focused()
    page.keyboard.type(operator)
    page.keyboard.press("Enter")
    expect(page.locator("#who-role")).to_have_text("operator")
    console.go(f"#/device/{device_name}")
    # A new view puts the focus on its heading, so Tab goes on from there.
    expect(page.get_by_role("heading", name=f"Device {device_name}")).to_be_focused()
    passed = _tab_to(console, "Command")
    # Every stop on the way showed where the focus was, and none was skipped to the input.
    assert all(stop["outline"] != "none" and stop["width"] >= 2 for stop in passed), passed
    assert [stop["label"] for stop in passed[-2:]] == ["Kind", "Command"], passed
    page.keyboard.type("*IDN?")
    page.keyboard.press("Enter")
    expect(page.locator(".terminal .reply")).to_contain_text("HWQ,SIM")
    # The live output takes the focus too, so a keyboard can scroll it.
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("log")).to_be_focused()


def test_devices_that_poll_over_http_are_listed_with_the_presence_their_polls_give(
    console: ConsolePage,
    stack: Stack,
    device_name: str,
) -> None:
    token = poll_device(stack, device_name)
    console.sign_in(stack.admin_token)
    presence = console.page.locator(f'tr[data-device="{device_name}"] [data-presence]')
    expect(presence).to_have_attribute("data-presence", "offline")
    assert stack.request("GET", f"/devices/{device_name}/next?wait=0", token=token).status == 204
    expect(presence).to_have_attribute("data-presence", "online")
    # Silent past its poll's wait and the grace, the board shows offline without a reload.
    expect(presence).to_have_attribute("data-presence", "offline", timeout=60_000)


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_tokens_page_offers_nothing_but_to_admins(
    console: ConsolePage,
    stack: Stack,
    role: str,
) -> None:
    console.sign_in(stack.hwq("token", "create", "--role", role, "--name", f"{role}-t").strip())
    expect(console.page.locator("#who-role")).to_have_text(role)
    console.go("#/tokens")
    expect(console.page.get_by_text("Only an admin may list and revoke tokens")).to_be_visible()
    view = console.page.locator("#view")
    assert view.get_by_role("button").count() == 0
    assert view.locator("input, select, table").count() == 0
