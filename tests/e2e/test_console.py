"""The browser console at `/`, in a real Chromium, against a real stack with simulated devices."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from playwright.sync_api import Browser, expect

from bench.browser import chromium, chromium_missing
from bench.local_stack import Stack

from conftest import unavailable
from console_page import UI_TIMEOUT_MS, ConsolePage


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; skipped without it locally, a failure in CI."""
    missing = chromium_missing()
    if missing:
        unavailable(missing)
    # The machine may be busy: every expectation waits as long as a page action may.
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with chromium() as browser:
        yield browser


@pytest.fixture
def console(browser: Browser, stack: Stack) -> Iterator[ConsolePage]:
    """A fresh tab on the console; no script error or refused resource may happen in it."""
    opened = ConsolePage.open(browser, f"http://127.0.0.1:{stack.api_port}")
    yield opened
    opened.close()
    assert opened.problems == []


def _expect() -> object:
    return expect


def _token(stack: Stack, role: str, name: str) -> str:
    return stack.hwq("token", "create", "--role", role, "--name", name).strip()


def test_signing_in_shows_the_devices_and_their_presence(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    page = console.page
    page.get_by_label("Token").fill("hwq_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not known")
    console.sign_in(stack.admin_token)
    expect(page.locator("#who-role")).to_have_text("admin")
    row = page.locator(f'tr[data-device="{device_name}"]')
    expect(row.locator("[data-presence]")).to_have_attribute("data-presence", "online")
    # The token is kept in the tab, never in the address.
    assert stack.admin_token not in page.url
    # Stopping the worker shows in the list without a reload.
    stack.stop(f"device-{device_name}")
    expect(row.locator("[data-presence]")).not_to_have_attribute(
        "data-presence", "online", timeout=60_000
    )


def test_a_command_sent_from_the_terminal_shows_its_reply(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    console.sign_in(stack.admin_token)
    console.go(f"#/device/{device_name}")
    command = console.page.get_by_label("Command", exact=True)
    command.fill("*IDN?")
    command.press("Enter")
    reply = console.page.locator(".terminal .reply")
    expect(reply).to_contain_text("HWQ,SIM")
    command.fill("ECHO console says hi")
    console.page.get_by_role("button", name="Send").click()
    expect(reply).to_have_count(2)
    expect(reply.last).to_contain_text("console says hi")
    # Raw bytes, typed with escapes: the terminator is part of what is sent.
    console.page.get_by_label("Kind").select_option("raw")
    command.fill("ECHO bytes\\x21\\n")
    command.press("Enter")
    expect(reply).to_have_count(3)
    expect(reply.last).to_contain_text("bytes!")
    history = stack.request("GET", f"/commands?device={device_name}").body["items"]
    assert [c["payload"] for c in history[1:]] == ["ECHO console says hi", "*IDN?"]
    assert base64.b64decode(history[0]["payload"]) == b"ECHO bytes!\n"


def test_the_terminal_shows_the_live_stream_while_a_command_runs(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    _needs_route(stack, "/api/v1/devices/{}/stream")
    stack.add_sim_device(device_name)
    console.sign_in(stack.admin_token)
    console.go(f"#/device/{device_name}")
    expect(console.page.locator("#stream-status")).to_have_text("live")
    stack.wait(stack.submit(device_name, "ECHO from elsewhere"))
    # A device's bytes may arrive in any number of chunks, each a line of its own.
    for kind, text in (("tx", "ECHO from elsewhere"), ("rx", "from elsewhere")):
        console.wait_until(
            """([kind, text]) => Array.from(
                document.querySelectorAll(`.terminal [data-kind="${kind}"] .text`),
                (line) => line.textContent).join("").includes(text)""",
            [kind, text],
        )
    terminal = console.page.locator(".terminal")
    # rx and tx differ by colour as well as by their marker.
    rx = terminal.locator('[data-kind="rx"]').first
    tx = terminal.locator('[data-kind="tx"]').first
    colour = "el => getComputedStyle(el).color"
    assert rx.evaluate(colour) != tx.evaluate(colour)
    assert rx.locator(".marker").inner_text() != tx.locator(".marker").inner_text()


def test_a_queued_command_is_cancelled_from_the_history(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    busy = stack.submit(device_name, "SLEEP 10000", timeout_s=30)
    queued = stack.submit(device_name, "*IDN?")
    console.sign_in(stack.admin_token)
    console.go(f"#/commands?device={device_name}")
    row = console.page.locator(f'tr[data-command="{queued}"]')
    row.get_by_role("button", name="Cancel").click()
    expect(row.locator(".state-cancelled")).to_have_text("cancelled")
    assert stack.wait(queued)["state"] == "cancelled"
    assert stack.wait(busy)["state"] == "done"
    assert "*IDN?" not in stack.sim_log(device_name)


def test_a_manual_analysis_is_recorded_from_the_commands_page(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "MEAS:VOLT?", analysis={"analyzer": "manual"})
    assert stack.wait(command_id, seconds=20)["state"] == "responded"
    console.sign_in(stack.admin_token)
    console.go(f"#/command/{command_id}")
    page = console.page
    page.get_by_label("Verdict").select_option("fail")
    page.get_by_label("Measured value (optional)").fill("1.25")
    page.get_by_label("Note").fill("ripple too high")
    page.get_by_role("button", name="Record analysis").click()
    expect(page.locator("#command-state")).to_have_text("done")
    expect(page.locator("#timeline li")).to_have_count(4)
    analysis = stack.request("GET", f"/commands/{command_id}").body["analysis"]
    assert analysis["value"] == {"ok": False, "value": 1.25, "note": "ripple too high"}


def test_a_viewer_is_offered_nothing_it_may_not_do(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    busy = stack.submit(device_name, "SLEEP 10000", timeout_s=30)
    queued = stack.submit(device_name, "*IDN?")
    console.sign_in(_token(stack, "viewer", f"viewer-{device_name}"))
    page = console.page
    expect(page.locator("#who-role")).to_have_text("viewer")
    expect(page.locator(f'tr[data-device="{device_name}"]')).to_be_visible()
    expect(page.get_by_role("link", name="Tokens")).to_be_hidden()
    assert page.get_by_role("button", name="Activate").count() == 0
    assert page.locator("#rename-form").count() == 0
    console.go(f"#/commands?device={device_name}")
    expect(page.locator(f'tr[data-command="{queued}"]')).to_contain_text("queued")
    assert page.get_by_role("button", name="Cancel").count() == 0
    console.go(f"#/device/{device_name}")
    expect(page.get_by_role("log")).to_be_visible()
    expect(page.get_by_text("sending needs an operator token")).to_be_visible()
    assert page.get_by_role("button", name="Send").count() == 0
    assert page.locator("#repeat-form").count() == 0
    stack.wait(busy)
    stack.wait(queued)


def test_history_pages_forward_and_back(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    ids = [stack.submit(device_name, f"ECHO {i}") for i in range(25)]
    stack.wait(ids[-1])
    console.sign_in(stack.admin_token)
    console.go("#/commands")
    page = console.page
    page.get_by_label("Device").select_option(device_name)
    page.get_by_role("button", name="Show").click()
    rows = page.locator("tbody tr[data-command]")
    expect(rows).to_have_count(20)
    newest_first = list(reversed(ids))
    expect(rows.first).to_have_attribute("data-command", newest_first[0])
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(5)
    expect(rows.first).to_have_attribute("data-command", newest_first[20])
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(20)
    expect(rows.first).to_have_attribute("data-command", newest_first[0])


def test_a_repeated_measurement_is_plotted(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    console.sign_in(stack.admin_token)
    console.go(f"#/device/{device_name}")
    page = console.page
    form = page.locator("#repeat-form")
    form.get_by_label("Repeated command").fill("MEAS:VOLT?")
    form.get_by_label("every (s)").fill("0.3")
    form.get_by_label("for (s)").fill("2")
    form.get_by_role("button", name="Start").click()
    points = page.locator("#repeat-plot svg circle")
    expect(points.nth(2)).to_be_attached()
    expect(form.get_by_role("button", name="Start")).to_be_visible(timeout=60_000)
    count = points.count()
    measured = stack.request("GET", f"/commands?device={device_name}").body["items"]
    assert count == len([c for c in measured if c["state"] == "done"]) >= 3
    # The command's page plots the same payload across its history.
    console.go(f"#/command/{measured[0]['id']}")
    expect(page.locator("#payload-plot svg circle")).to_have_count(count)


def test_an_admin_lists_and_revokes_tokens(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    doomed = _token(stack, "operator", f"doomed-{device_name}")
    console.sign_in(stack.admin_token)
    console.go("#/tokens")
    page = console.page
    row = page.locator("tr", has_text=f"doomed-{device_name}")
    expect(row).to_be_visible()
    page.get_by_label("Role").select_option("device")
    page.get_by_label("Name").fill("bench-psu")
    page.get_by_label("Device").fill("psu0")
    expect(page.locator("#create-command")).to_have_text(
        "hwq token create --role device --name bench-psu --device psu0"
    )
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0)
    assert stack.request("GET", "/whoami", token=doomed).status == 401
    assert not re.search(r"hwq_[A-Za-z0-9_-]{20,}", page.content())


def test_a_token_revoked_while_signed_in_sends_the_page_back_to_sign_in(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    viewer = _token(stack, "viewer", f"leaving-{device_name}")
    console.sign_in(viewer)
    page = console.page
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()
    (own,) = [
        t for t in stack.request("GET", "/tokens").body["items"]
        if t["name"] == f"leaving-{device_name}"
    ]  # fmt: skip
    assert stack.request("DELETE", f"/tokens/{own['id']}").status == 204
    # The device list's next poll is refused, and the page asks for a token again.
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.locator("#sign-in-error")).to_contain_text("no longer accepts this token")
    expect(page.locator("#view")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def _needs_route(stack: Stack, path: str) -> None:
    """Skip where this API lacks a route the console uses but another part of hwq serves.

    `path` as the OpenAPI document spells it, whatever its parameters are named: `{}`.
    """
    paths = stack.request("GET", "/openapi.json").body["paths"]
    if path not in {re.sub(r"\{[^}]*\}", "{}", known) for known in paths}:
        pytest.skip(f"this API has no {path}")


def test_an_admin_renames_a_device_from_the_list(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    console.sign_in(stack.admin_token)
    page = console.page
    form = page.locator("#rename-form")
    expect(form.get_by_label("Device")).to_contain_text(device_name)
    form.get_by_label("Device").select_option(device_name)
    form.get_by_label("New name").fill(f"{device_name}-new")
    form.get_by_label("New name").press("Enter")
    expect(page.locator(f'tr[data-device="{device_name}-new"]')).to_be_visible()
    expect(page.locator(f'tr[data-device="{device_name}"]')).to_have_count(0)
    assert stack.request("GET", f"/devices/{device_name}-new").status == 200


def test_an_admin_deactivates_and_activates_a_device(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    _needs_route(stack, "/api/v1/devices/{}/deactivate")
    stack.add_sim_device(device_name)
    console.sign_in(stack.admin_token)
    row = console.page.locator(f'tr[data-device="{device_name}"]')
    row.get_by_role("button", name="Deactivate").click()
    expect(row.locator("[data-presence]")).to_have_attribute("data-presence", "inactive")
    assert stack.device(device_name)["active"] is False
    row.get_by_role("button", name=f"Activate {device_name}", exact=True).click()
    expect(row.locator("[data-presence]")).not_to_have_attribute("data-presence", "inactive")
    assert stack.device(device_name)["active"] is True


def test_the_hosts_page_shows_each_hosts_ports(
    console: ConsolePage, stack: Stack, device_name: str
) -> None:
    _needs_route(stack, "/api/v1/hosts/{}/ports")
    stack.add_sim_device(device_name, worker=False)
    host = f"h{device_name}"
    port = {
        "path": "/dev/ttyUSB7", "by_id": "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        "description": "FT232R USB UART", "hwid": "USB VID:PID=0403:6001 SER=A1", "vid": "0403",
        "pid": "6001", "serial_number": "A1", "location": "1-1.2", "manufacturer": "FTDI",
        "product": "FT232R USB UART", "device": device_name,
    }  # fmt: skip
    # What a host agent announces (the shared contract's keys), written as the agent would.
    prefix = stack.key_prefix
    with redis.Redis.from_url(stack.redis_url) as client:
        client.sadd(f"{prefix}:hosts", host)
        now = datetime.now(UTC).isoformat()
        announced = {"name": host, "started_at": now, "last_seen": now, "pid": 1, "version": "t"}
        client.hset(f"{prefix}:host:{host}", mapping=announced)
        client.expire(f"{prefix}:host:{host}", 30)
        client.set(f"{prefix}:host:{host}:ports", json.dumps([port]), ex=30)
    console.sign_in(stack.admin_token)
    console.go("#/hosts")
    section = console.page.locator(f'section[data-host="{host}"]')
    expect(section.get_by_role("heading")).to_contain_text("online")
    expect(section.locator("tbody tr")).to_contain_text("/dev/ttyUSB7")
    section.get_by_role("link", name=device_name).first.click()
    expect(console.page.get_by_role("heading", name=f"Device {device_name}")).to_be_visible()
