"""A command's whole path through real processes: order, cancel, expiry, timeouts."""

from __future__ import annotations

import time
from datetime import datetime

from bench.local_stack import Stack
from worker_host.device_worker import DEVICE_HEARTBEAT_S

# An idle worker told to stop must be gone well before its next heartbeat would wake it.
IDLE_STOP_S = DEVICE_HEARTBEAT_S / 2


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_replies_come_back_from_the_instrument(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    command = stack.wait(stack.submit(device_name, "*IDN?"))
    assert command["state"] == "done"
    assert command["response"]["text"].startswith("HWQ,SIM")
    echoed = stack.wait(stack.submit(device_name, "ECHO hello bench"))
    assert echoed["response"] == {"text": "hello bench"}
    unknown = stack.wait(stack.submit(device_name, "BOGUS"))
    assert unknown["response"]["text"].startswith("ERR")
    # A healthy run warns of nothing: a warning in every log would teach people to skip them.
    api_warnings = [line for line in stack.log("api").splitlines() if " warning " in line]
    assert api_warnings == []


def test_one_device_runs_in_submission_order_never_two_at_once(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    ids = [stack.submit(device_name, f"ECHO {i}") for i in range(20)]
    commands = [stack.wait(i) for i in ids]
    assert [c["response"]["text"] for c in commands] == [str(i) for i in range(20)]
    intervals = [(_at(c["dispatched_at"]), _at(c["responded_at"])) for c in commands]
    for (_, previous_end), (next_start, _) in zip(intervals, intervals[1:], strict=False):
        assert previous_end <= next_start
    history = stack.request("GET", f"/commands?device={device_name}&limit=50").body["items"]
    assert [c["id"] for c in history] == list(reversed(ids))


def test_two_devices_run_at_the_same_time(stack: Stack, device_name: str) -> None:
    other = device_name + "b"
    stack.add_sim_device(device_name)
    stack.add_sim_device(other)
    first = stack.submit(device_name, "SLEEP 800")
    second = stack.submit(other, "SLEEP 800")
    a, b = stack.wait(first), stack.wait(second)
    assert a["state"] == b["state"] == "done"
    start = max(_at(a["dispatched_at"]), _at(b["dispatched_at"]))
    end = min(_at(a["responded_at"]), _at(b["responded_at"]))
    assert start < end, "the two devices' commands did not overlap"


def test_a_cancelled_command_never_reaches_the_device(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    busy = stack.submit(device_name, "SLEEP 1000")
    victim = stack.submit(device_name, "ECHO must-not-arrive")
    reply = stack.request("POST", f"/commands/{victim}/cancel")
    assert reply.status == 200 and reply.body["state"] == "cancelled"
    assert stack.wait(busy)["state"] == "done"
    after = stack.wait(stack.submit(device_name, "ECHO after"))
    assert after["response"]["text"] == "after"
    assert stack.wait(victim)["state"] == "cancelled"
    log = stack.sim_log(device_name)
    assert "SLEEP 1000" in log and "ECHO after" in log
    assert "must-not-arrive" not in log
    again = stack.request("POST", f"/commands/{victim}/cancel")
    assert again.status == 409
    assert again.headers["Content-Type"] == "application/problem+json"


def test_a_command_expires_while_its_worker_is_stopped(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    stack.stop(f"device-{device_name}")
    command_id = stack.submit(device_name, "ECHO too-late", expires_s=1)
    time.sleep(2)
    assert stack.wait(command_id, 10)["state"] == "expired"
    stack.start_worker(device_name)
    fresh = stack.wait(stack.submit(device_name, "ECHO fresh"))
    assert fresh["response"]["text"] == "fresh"
    assert "too-late" not in stack.sim_log(device_name)
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    assert [e["state"] for e in events] == ["queued", "expired"]


def test_a_slow_reply_times_out_and_the_next_command_gets_its_own(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    slow = stack.wait(stack.submit(device_name, "SLEEP 1000", timeout_s=0.3))
    assert slow["state"] == "timed_out"
    assert "0.3" in slow["error"]
    following = stack.wait(stack.submit(device_name, "*IDN?"))
    assert following["state"] == "done"
    assert following["response"]["text"].startswith("HWQ,SIM")


def test_a_manual_analysis_finishes_a_responded_command(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "MEAS:VOLT?", analysis={"analyzer": "manual"})
    waiting = stack.wait(command_id)
    assert waiting["state"] == "responded"
    assert stack.device(device_name)["state"] == 3
    reply = stack.request("POST", f"/commands/{command_id}/analysis", body={"value": "looks ok"})
    assert reply.status == 200
    assert reply.body["state"] == "done"
    assert reply.body["analysis"]["value"] == "looks ok"
    assert stack.device(device_name)["state"] == 0


def test_a_registered_analyzer_runs_on_the_server_worker(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(
        device_name, "MEAS:VOLT?", analysis={"analyzer": "number", "params": {"min": 0, "max": 5}}
    )
    done = stack.wait(command_id)
    assert done["state"] == "done"
    assert done["analysis"]["value"]["within"] is True
    assert float(done["response"]["text"]) == done["analysis"]["value"]["value"]


def test_a_worker_answers_remote_control_during_a_long_command(
    stack: Stack, device_name: str
) -> None:
    from config import Settings
    from tasks.celery_app import create_celery

    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "SLEEP 3000", timeout_s=10)
    deadline = time.monotonic() + 10
    while stack.request("GET", f"/commands/{command_id}").body["state"] != "dispatched":
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    app = create_celery(Settings(redis_url=stack.redis_url, key_prefix=stack.key_prefix))
    started = time.monotonic()
    replies = app.control.ping(destination=[f"{device_name}@e2e"], timeout=2)
    assert replies == [{f"{device_name}@e2e": {"ok": "pong"}}]
    assert time.monotonic() - started < 2.5
    # What Flower's worker page and `celery inspect` show: the command running now, and the
    # device's queue, which the worker serves.
    inspect = app.control.inspect([f"{device_name}@e2e"], timeout=2)
    active = inspect.active()
    assert [task["id"] for task in active[f"{device_name}@e2e"]] == [command_id]
    queues = inspect.active_queues()[f"{device_name}@e2e"]
    assert [queue["name"] for queue in queues] == [f"hwq.device.{device_name}"]
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "dispatched"
    assert stack.wait(command_id)["state"] == "done"


def test_flower_receives_each_commands_task_events_even_when_the_worker_stops_next(
    stack: Stack, device_name: str
) -> None:
    """A device worker sends its task events in batches; none is lost, not even at shutdown."""
    import threading

    from config import Settings
    from tasks.celery_app import create_celery

    stack.add_sim_device(device_name)
    app = create_celery(Settings(redis_url=stack.redis_url, key_prefix=stack.key_prefix))
    seen: dict[str, list[str]] = {}
    changed = threading.Condition()

    def on_event(event: dict[str, str]) -> None:
        if event["type"].startswith("task-"):
            with changed:
                seen.setdefault(event["uuid"], []).append(event["type"])
                changed.notify_all()

    def events_of(command_id: str, last: str, seconds: float) -> list[str]:
        with changed:
            changed.wait_for(lambda: last in seen.get(command_id, []), timeout=seconds)
            return list(seen.get(command_id, []))

    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        listener = threading.Thread(
            target=receiver.capture, kwargs={"limit": None, "timeout": 60}, daemon=True
        )
        listener.start()
        try:
            # Events published before the receiver subscribed are gone: run commands until
            # one is seen whole, then the receiver is surely listening.
            for _ in range(10):
                first = stack.submit(device_name, "*IDN?")
                assert stack.wait(first)["state"] == "done"
                if "task-succeeded" in events_of(first, "task-succeeded", 3):
                    break
            assert events_of(first, "task-succeeded", 0) == [
                "task-received", "task-started", "task-succeeded"
            ]  # fmt: skip
            last = stack.submit(device_name, "ECHO last words")
            assert stack.wait(last)["state"] == "done"
            stack.stop(f"device-{device_name}")
            assert events_of(last, "task-succeeded", 10) == [
                "task-received", "task-started", "task-succeeded"
            ]  # fmt: skip
        finally:
            receiver.should_stop = True
            listener.join(timeout=10)


def test_an_idle_device_worker_stops_at_once_when_told(stack: Stack, device_name: str) -> None:
    """Ctrl-C or SIGTERM must not wait for an idle worker's next timer (its heartbeat, 10 s)."""
    stack.add_sim_device(device_name)
    assert stack.wait(stack.submit(device_name, "ECHO before"))["state"] == "done"
    time.sleep(1)  # idle: the loop is in its long wait
    process = stack.processes[f"device-{device_name}"]
    started = time.monotonic()
    stack.stop(f"device-{device_name}")
    assert process.returncode is not None
    assert time.monotonic() - started < IDLE_STOP_S
    assert not stack.device(device_name)["online"]
