"""A device's live stream (DESIGN §9), end to end: real device workers reading simulated devices
on pseudo-terminals all the time, the API serving Server-Sent Events, observers over HTTP."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.harness_http import http
from bench.local_stack import TERMINAL, Stack, running_stack

from stream_observer import Event, Observer, command_state_seen

pytestmark = pytest.mark.e2e

OBSERVERS = 5
COMMANDS = 100
MAX_STREAMS_PER_TOKEN = 6
# Events a quick command leaves on its device's stream: dispatched, tx, rx, done.
EVENTS_PER_COMMAND = 4


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("hwq-stream"),
        redis_url,
        HWQ_MAX_STREAMS_PER_TOKEN=str(MAX_STREAMS_PER_TOKEN),
    ) as stack:
        yield stack


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def add_device(
    stack: Stack,
    name: str,
    kind: str = "scpi",
    *sim_args: str,
    options: dict[str, Any] | None = None,
) -> None:
    """A simulator (with extra `hwq sim` options) registered as a device, its worker online."""
    link = stack.home / "dev" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    stack.spawn(f"sim-{name}", "sim", "--kind", kind, "--name", name, "--home", str(stack.home),
                "--link", str(link), *sim_args, with_database=False)  # fmt: skip
    stack.wait_for(link.exists, f"simulator {name}")
    body = {"name": name, "address": str(link), "codec": "frame" if kind == "frame" else "line"}
    if options:
        body["options"] = options
    reply = stack.request("POST", "/devices", body=body)
    assert reply.status == 201, reply.body
    stack.start_worker(name)


def viewer_token(stack: Stack, name: str) -> str:
    return stack.hwq("token", "create", "--role", "viewer", "--name", name).strip()


def submit(stack: Stack, device: str, body: dict[str, Any]) -> str:
    reply = stack.request("POST", f"/devices/{device}/commands", body=body)
    assert reply.status == 202, reply.body
    return str(reply.body["id"])


def settled(stack: Stack, command_id: str, seconds: float = 60) -> dict[str, Any]:
    command = stack.wait(command_id, seconds)
    assert command["state"] in TERMINAL, command
    return command


def late_replies(stack: Stack, command_id: str) -> list[dict[str, Any]]:
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    return [e for e in events if (e["detail"] or "").startswith("late_reply")]


def rx_bytes(events: list[Event]) -> bytes:
    return b"".join(e.chunk for e in events if e.kind == "rx")


def test_five_observers_see_the_same_bytes_in_order_while_commands_run_one_at_a_time(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name)
    viewer = viewer_token(stack, "watcher")
    observers = [
        Observer(stack, device_name, viewer, in_query=index % 2 == 0) for index in range(OBSERVERS)
    ]
    try:
        assert [o.status for o in observers] == [200] * OBSERVERS
        ids = [submit(stack, device_name, {"kind": "line", "payload": f"ECHO {n}"})
               for n in range(COMMANDS)]  # fmt: skip
        for n, command_id in enumerate(ids):
            command = settled(stack, command_id)
            assert command["state"] == "done" and command["response"] == {"text": str(n)}
        for observer in observers:
            observer.wait_until(
                lambda events: command_state_seen(events, ids[-1], "done"), "the last command"
            )
        seen = [[(e.id, e.kind, e.data["data"]) for e in o.events] for o in observers]
        assert all(events == seen[0] for events in seen), "observers saw different streams"
        events = observers[0].events
        assert rx_bytes(events) == b"".join(f"{n}\n".encode() for n in range(COMMANDS))
        # One command at a time, in submission order: each one's claim, bytes out, bytes back
        # and end, before the next one's claim.
        expected = []
        for n, command_id in enumerate(ids):
            expected += [("command", command_id, "dispatched"), ("tx", command_id, f"ECHO {n}\n"),
                         ("rx", None, f"{n}\n"), ("command", command_id, "done")]  # fmt: skip
        shown: list[tuple[str, str | None, str]] = []
        for e in events:
            if e.kind == "command":
                shown.append((e.kind, e.data["id"], e.data["state"]))
            elif shown and e.kind == "rx" and shown[-1][0] == "rx":
                # One reply may come in more than one chunk.
                shown[-1] = ("rx", None, shown[-1][2] + e.data["text"])
            elif e.kind in ("rx", "tx"):
                shown.append((e.kind, e.data.get("command_id"), e.data["text"]))
        assert shown == expected
        # A token in the query (as a browser sends it) is never logged.
        assert viewer not in stack.log("api")
    finally:
        for observer in observers:
            observer.close()


def test_unsolicited_output_is_streamed_and_never_taken_for_an_answer(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name, "scpi", "--banner", "BOOT sim ready", "--chatter", "0.7")
    observer = Observer(stack, device_name, query="last_event_id=0-0")
    try:
        observer.wait_until(lambda events: b"BOOT sim ready\n" in rx_bytes(events), "the banner")
        observer.wait_until(lambda events: rx_bytes(events).count(b" chatter ") >= 2, "chatter")
        for _ in range(5):
            command = settled(stack, stack.submit(device_name, "*IDN?"))
            assert command["state"] == "done", command
            assert command["response"]["text"].startswith("HWQ,SIM"), command
            time.sleep(0.5)
    finally:
        observer.close()


def test_a_late_reply_is_kept_with_its_own_command_and_shown_on_the_stream(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name)
    observer = Observer(stack, device_name)
    try:
        sleeper = stack.submit(device_name, "SLEEP 1500", timeout_s=0.3)
        assert settled(stack, sleeper)["state"] == "timed_out"
        # Kept as soon as it comes, with no next command to drain the port.
        stack.wait_for(lambda: late_replies(stack, sleeper), "the late reply", timeout=30)
        [late] = late_replies(stack, sleeper)
        assert late["state"] == "timed_out" and "OK" in late["detail"]
        observer.wait_until(lambda events: b"OK\n" in rx_bytes(events), "the late OK")
        idn = settled(stack, stack.submit(device_name, "*IDN?"))
        assert idn["response"]["text"].startswith("HWQ,SIM"), idn
    finally:
        observer.close()


def test_a_dropped_watch_resumes_from_its_last_event_id_losing_nothing(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name)
    first = Observer(stack, device_name)
    ids = [stack.submit(device_name, f"ECHO a{n}") for n in range(5)]
    first.wait_until(lambda events: command_state_seen(events, ids[-1], "done"), "first batch")
    first.close()
    last_seen = first.events[-1].id
    ids += [stack.submit(device_name, f"ECHO b{n}") for n in range(5)]
    for command_id in ids:
        settled(stack, command_id)
    resumed = Observer(stack, device_name, last_event_id=last_seen)
    try:
        resumed.wait_until(lambda events: command_state_seen(events, ids[-1], "done"), "the rest")
        everything = Observer(stack, device_name, query="last_event_id=0-0&follow=false")
        assert everything.status == 200
        everything.ended.wait(30)
        kept = first.events + resumed.events
        since_first = [e.id for e in everything.events if _after(e.id, first.events[0].id)]
        assert [e.id for e in kept] == [first.events[0].id, *since_first]
        assert rx_bytes(kept) == b"".join(f"{p}{n}\n".encode() for p in "ab" for n in range(5))
    finally:
        resumed.close()


def _after(entry_id: str, other: str) -> bool:
    return tuple(map(int, entry_id.split("-"))) > tuple(map(int, other.split("-")))


def test_a_raw_command_reading_nothing_is_done_once_written_its_answer_on_the_stream(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name)
    observer = Observer(stack, device_name)
    try:
        body = {"kind": "raw", "payload": b64(b"ECHO written only\n"), "read": None}
        command = settled(stack, submit(stack, device_name, body))
        assert command["state"] == "done" and command["response"] == {"data": ""}, command
        observer.wait_until(lambda e: b"written only\n" in rx_bytes(e), "the device's answer")
        stack.wait_for(lambda: "ECHO written only" in stack.sim_log(device_name), "the bytes")
        # Its answer is nobody's reply: the next command gets its own.
        idn = settled(stack, stack.submit(device_name, "*IDN?"))
        assert idn["response"]["text"].startswith("HWQ,SIM"), idn
        # Without `read`, a raw command still reads its reply.
        echo = settled(
            stack, submit(stack, device_name, {"kind": "raw", "payload": b64(b"ECHO back\n")})
        )
        assert base64.b64decode(echo["response"]["data"]) == b"back\n", echo
    finally:
        observer.close()


def test_frame_noise_is_on_the_stream_and_the_right_reply_still_answers(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name, "frame")
    observer = Observer(stack, device_name)
    try:
        body = {"kind": "frame", "payload": {"command_id": 4, "args": [7, -3]}, "timeout_s": 5}
        command_id = submit(stack, device_name, body)
        command = settled(stack, command_id)
        assert command["state"] == "done", command
        assert command["response"] == {"status": 0, "values": [7, -3]}, command
        observer.wait_until(lambda e: command_state_seen(e, command_id, "done"), "the command")
        # Three frames came back: a bad CRC, a wrong sequence number, then the answer.
        assert rx_bytes(observer.events).count(b"\x00") == 3
    finally:
        observer.close()


def test_the_reset_sequence_is_written_after_a_timeout(stack: Stack, device_name: str) -> None:
    add_device(stack, device_name, options={"reset": "*RST\n", "settle_s": 5})
    observer = Observer(stack, device_name)
    try:
        sleeper = stack.submit(device_name, "SLEEP 800", timeout_s=0.2)
        assert settled(stack, sleeper)["state"] == "timed_out"
        stack.wait_for(lambda: "*RST" in stack.sim_log(device_name), "the reset", timeout=30)
        log = stack.sim_log(device_name)
        assert log.index("SLEEP 800") < log.index("*RST")
        observer.wait_until(
            lambda events: any(e.kind == "tx" and e.chunk == b"*RST\n" for e in events),
            "the reset on the stream",
        )
        idn = settled(stack, stack.submit(device_name, "*IDN?"))
        assert idn["response"]["text"].startswith("HWQ,SIM"), idn
    finally:
        observer.close()


@pytest.mark.parametrize(
    "reset", [5, "", {"base64": "not base64!"}, {"text": "x"}, "x" * 2000], ids=repr
)
def test_a_bad_reset_sequence_is_refused_naming_it(
    stack: Stack, device_name: str, reset: object
) -> None:
    reply = stack.request("POST", "/devices", body={"name": device_name, "address": "loop://",
                                                    "options": {"reset": reset}})  # fmt: skip
    assert reply.status == 422, reply.body
    assert reply.body["errors"][0]["field"] == "options.reset", reply.body


def test_who_may_watch(stack: Stack, device_name: str) -> None:
    add_device(stack, device_name)
    viewer = viewer_token(stack, "viewer-only")
    watching = Observer(stack, device_name, viewer)
    try:
        assert watching.status == 200
        assert watching.response.headers["content-type"].startswith("text/event-stream")
    finally:
        watching.close()
    path = f"/devices/{device_name}/stream"
    assert stack.request("GET", path, token="not-a-token").status == 401
    assert http("GET", stack.base + path).status == 401
    assert http("GET", stack.base + path + "?token=").status == 422
    assert Observer(stack, "no-such-device", viewer).status == 404
    bad_resume = Observer(stack, device_name, viewer, last_event_id="yesterday")
    assert bad_resume.status == 422 and bad_resume.body["errors"][0]["field"] == "Last-Event-ID"
    # Past its cap a token's next stream is refused, and asked to come back later.
    capped = viewer_token(stack, "many-tabs")
    held = [Observer(stack, device_name, capped) for _ in range(MAX_STREAMS_PER_TOKEN)]
    try:
        assert [o.status for o in held] == [200] * MAX_STREAMS_PER_TOKEN
        refused = Observer(stack, device_name, capped)
        assert refused.status == 429
        assert refused.response.headers["retry-after"]
    finally:
        for observer in held:
            observer.close()
    # A stream whose client left gives its place back.
    stack.wait_for(lambda: _opens(stack, device_name, capped), "a freed place")


def _opens(stack: Stack, device: str, token: str) -> bool:
    observer = Observer(stack, device, token)
    observer.close()
    return observer.status == 200


def test_hwq_devices_watch_prints_the_stream_and_ends_cleanly_on_ctrl_c(
    stack: Stack, device_name: str
) -> None:
    add_device(stack, device_name)
    env = {**stack.env(), "HWQ_URL": stack.base, "HWQ_TOKEN": viewer_token(stack, "cli")}
    watch = subprocess.Popen(
        [sys.executable, "-m", "hwq.cli", "devices", "watch", device_name, "--since", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        command_id = stack.submit(device_name, "ECHO watched")
        assert settled(stack, command_id)["state"] == "done"
        lines = []
        deadline = time.monotonic() + 60
        assert watch.stdout is not None
        while time.monotonic() < deadline:
            line = watch.stdout.readline()
            lines.append(line)
            if f"command {command_id} done" in line:
                break
        text = "".join(lines)
        assert f"> ECHO watched\\n  [{command_id}]" in text, text
        assert "< watched\\n" in text, text
        watch.send_signal(signal.SIGINT)
        _, errors = watch.communicate(timeout=30)
        assert watch.returncode == 0 and "Traceback" not in errors, errors
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
