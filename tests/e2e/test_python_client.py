"""`from hwq import Client, AsyncClient` against a real running stack: results, paging, and one
exception class per problem status."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from bench.local_stack import Stack, running_stack
from hwq import AsyncClient, Client
from hwq.client import (
    Command,
    Conflict,
    ConnectionFailed,
    Device,
    Forbidden,
    HwqClientError,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.base, stack.admin_token, timeout=30) as hwq:
        yield hwq


def test_run_answers_in_one_request_when_the_command_settles(
    stack: Stack, client: Client, device_name: str
) -> None:
    stack.add_sim_device(device_name)

    command = client.run(device_name, "*IDN?")

    assert isinstance(command, Command)
    assert command.state == "done" and command.settled
    assert command.text is not None and command.text.startswith("HWQ,SIM")
    assert command.device == device_name


def test_run_waits_on_when_the_first_request_returns_unsettled(
    stack: Stack, client: Client, device_name: str
) -> None:
    stack.add_sim_device(device_name)

    # The submission's own wait (1 s) ends first; run goes on waiting with GET ?wait.
    command = client.run(device_name, "SLEEP 2500", wait=1)
    assert command.state in ("queued", "dispatched")

    settled = client.wait(command.id, timeout=30)
    assert settled.state == "done" and settled.text == "OK"


def test_submit_get_cancel_events(stack: Stack, client: Client, device_name: str) -> None:
    stack.add_sim_device(device_name)

    busy = client.submit(device_name, "SLEEP 2000", timeout=10)
    behind = client.submit(device_name, "ECHO never")
    assert (busy.state, behind.state) == ("queued", "queued")

    cancelled = client.cancel(behind.id)
    assert cancelled.state == "cancelled" and cancelled.terminal
    with pytest.raises(Conflict):
        client.cancel(behind.id)

    done = client.wait(busy.id, timeout=30)
    assert done.state == "done"
    assert client.get(busy.id) == done
    states = [event.state for event in client.events(busy.id)]
    assert states[0] == "queued" and states[-1] == "done"
    assert "ECHO never" not in stack.sim_log(device_name)


def test_history_walks_every_page(stack: Stack, client: Client, device_name: str) -> None:
    stack.add_sim_device(device_name, worker=False)
    submitted = [client.submit(device_name, f"ECHO {i}").id for i in range(5)]

    pages = list(client.history_pages(device=device_name, limit=2))
    seen = [c.id for c in client.history(device=device_name, limit=2)]

    assert len(pages) == 3 and [len(p.items) for p in pages] == [2, 2, 1]
    assert seen == list(reversed(submitted))  # newest first
    for command_id in submitted:
        client.cancel(command_id)


def test_analyse_finishes_a_manual_analysis(stack: Stack, client: Client, device_name: str) -> None:
    stack.add_sim_device(device_name)

    responded = client.run(device_name, "MEAS:VOLT?", analysis={"analyzer": "manual"})
    assert responded.state == "responded" and responded.settled

    done = client.analyse(responded.id, {"verdict": "pass"})
    assert done.state == "done"


def test_devices_are_typed(stack: Stack, client: Client, device_name: str) -> None:
    stack.add_sim_device(device_name)

    device = client.device(device_name)
    assert isinstance(device, Device) and device.online and device.codec == "line"
    assert device_name in [d.name for d in client.devices()]


def test_each_problem_status_is_its_own_exception(
    stack: Stack, client: Client, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    viewer = stack.hwq("token", "create", "--role", "viewer", "--name", "v").strip()

    with pytest.raises(NotFound) as not_found:
        client.device("no-such-device")
    assert not_found.value.status == 404
    with pytest.raises(ValidationFailed) as invalid:
        client.submit(device_name, "x", timeout=0)
    assert [e["field"] for e in invalid.value.errors] == ["timeout_s"]
    with pytest.raises(Unauthorized), Client(stack.base, "not-a-token") as stranger:
        stranger.devices()
    with Client(stack.base, viewer) as reader:
        assert reader.devices()  # a viewer reads
        with pytest.raises(Forbidden):
            reader.submit(device_name, "*IDN?")
    for error in (NotFound, ValidationFailed, Unauthorized, Forbidden):
        assert issubclass(error, HwqClientError)


def test_an_api_that_is_not_there_is_connection_failed() -> None:
    with socket.socket() as bound:  # bound, not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with Client(url, "s3cret") as hwq, pytest.raises(ConnectionFailed) as caught:
            hwq.devices()
    assert url in str(caught.value) and "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(hwq)


def test_the_async_client_runs_and_lists(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)

    async def use() -> tuple[Command, list[str], Command]:
        async with AsyncClient(stack.base, stack.admin_token) as hwq:
            done = await hwq.run(device_name, "ECHO async")
            names = [d.name for d in await hwq.devices()]
            queued = await hwq.submit(device_name, "SLEEP 500")
            return done, names, await hwq.wait(queued.id, timeout=30)

    done, names, waited = asyncio.run(use())
    assert done.state == "done" and done.text == "async"
    assert device_name in names
    assert waited.state == "done"


def test_async_errors_are_the_same_classes(stack: Stack) -> None:
    async def missing() -> None:
        async with AsyncClient(stack.base, stack.admin_token) as hwq:
            await hwq.device("no-such-device")

    with pytest.raises(NotFound):
        asyncio.run(missing())


def test_queue_full_payload_too_large_and_unavailable(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, device_name: str
) -> None:
    """Statuses that need tight limits: a stack of their own."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-limits"),
        redis_url,
        HWQ_QUEUE_CAP="1",
        HWQ_MAX_BODY_BYTES="2048",
        HWQ_MAX_WAITS="1",
    ) as limited:
        limited.add_sim_device(device_name, worker=False)
        with Client(limited.base, limited.admin_token) as hwq:
            queued = hwq.submit(device_name, "*IDN?")
            with pytest.raises(QueueFull) as full:
                hwq.submit(device_name, "*IDN?")
            assert full.value.status == 429
            with pytest.raises(PayloadTooLarge):
                hwq.submit(device_name, "x" * 4096)

            # One held wait fills the API's cap: the next wait is refused with 503.
            holder = threading.Thread(target=hwq.wait, args=(queued.id, 8), daemon=True)
            holder.start()
            time.sleep(2)
            with Client(limited.base, limited.admin_token) as other:
                with pytest.raises(Unavailable):
                    other.wait(queued.id, timeout=5)
                # A submission with a wait past the cap is still accepted: 202 as it stands.
                other.cancel(queued.id)
                holder.join(timeout=30)
                blocker = other.submit(device_name, "*IDN?")
                holder = threading.Thread(target=hwq.wait, args=(blocker.id, 8), daemon=True)
                holder.start()
                time.sleep(2)
                other.cancel(blocker.id)
                accepted = other.run(device_name, "*IDN?", wait=5)
                assert accepted.state == "queued"
                holder.join(timeout=30)


def test_stream_yields_the_devices_live_events_after_since(
    stack: Stack, client: Client, device_name: str, redis_url: str
) -> None:
    """Against the stream contract (`P:stream:<name>`, SSE per DESIGN §9)."""
    paths = stack.request("GET", "/openapi.json").body["paths"]
    if "/api/v1/devices/{name}/stream" not in paths:
        pytest.skip("needs the stream route GET /devices/{name}/stream (not in this build)")
    stack.add_sim_device(device_name, worker=False)
    store = redis.Redis.from_url(redis_url)
    key = f"{stack.key_prefix}:stream:{device_name}"
    at = "2026-01-01T00:00:00Z"
    first = store.xadd(key, {"kind": "rx", "at": at, "data": b"before\n", "command_id": ""})
    store.xadd(key, {"kind": "rx", "at": at, "data": b"hello\n", "command_id": ""})
    store.xadd(key, {"kind": "presence", "at": at, "data": b'{"presence": "online"}',
                     "command_id": ""})  # fmt: skip
    store.close()

    events = []
    for event in client.stream(device_name, since=first.decode()):
        events.append(event)
        if len(events) == 2:
            break

    assert (events[0].kind, events[0].data, events[0].text) == ("rx", b"hello\n", "hello\n")
    assert events[1].kind == "presence" and events[1].fields["presence"] == "online"


def test_the_registry_calls(client: Client, device_name: str) -> None:
    added = client.add_device(device_name, address="loop://", baudrate=9600)
    assert (added.name, added.address, added.baudrate) == (device_name, "loop://", 9600)
    assert client.update_device(device_name, baudrate=19200).baudrate == 19200
    with pytest.raises(Conflict):
        client.add_device(device_name, address="loop://")
    client.remove_device(device_name)
    with pytest.raises(NotFound):
        client.device(device_name)
    assert any(t.name == "e2e" and t.role == "admin" for t in client.tokens())


def test_a_stream_of_an_unknown_device_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        next(iter(client.stream("no-such-device")))
