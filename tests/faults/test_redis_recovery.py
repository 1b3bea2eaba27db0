"""Redis paused, stopped, flushed or partly lost under a running stack: every accepted command
ends once, in one terminal state, and a non-idempotent one never reaches its device twice.

These tests do destructive things to Redis (DEBUG SLEEP, SIGSTOP, FLUSHALL), so the module
runs on a Redis server of its own, never the session's shared one.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.local_stack import TERMINAL, Stack, running_stack
from hwq.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server for this module alone."""
    # Append-only, so that a stop and a start keep the data, as a restart in production does.
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-faults"), persist=True)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="module")
def stack(own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack on that Redis whose leases lapse two seconds after a command's timeout."""
    home: Path = tmp_path_factory.mktemp("hwq-redis-faults")
    with running_stack(home, own_redis.url, HWQ_LEASE_GRACE_S="2") as stack:
        yield stack


@pytest.fixture
def client(own_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client on the module's Redis that outwaits a paused server."""
    client = redis.Redis.from_url(own_redis.url, socket_timeout=30)
    yield client
    client.close()


def _wait_until(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _state(stack: Stack, command_id: str) -> str:
    return str(stack.request("GET", f"/commands/{command_id}").body["state"])


def _recorded(stack: Stack) -> bool:
    return stack.request("GET", "/health").body["recorder_pending"] == 0


def _settled(stack: Stack, command_id: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    _wait_until(lambda: _state(stack, command_id) in TERMINAL, f"{command_id} ending", timeout)
    return dict(stack.request("GET", f"/commands/{command_id}").body)


def _in_history(stack: Stack, device: str, command_id: str) -> bool:
    items = stack.request("GET", f"/commands?device={device}&limit=500").body["items"]
    return any(item["id"] == command_id for item in items)


def _pause(server: EmbeddedRedis, seconds: float) -> None:
    """Stop the Redis process for `seconds`, as a stall of the host (or DEBUG SLEEP) would."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        server.process.send_signal(signal.SIGCONT)


def test_a_submit_while_redis_is_paused_is_never_a_503_for_a_command_that_runs(
    stack: Stack, device_name: str, own_redis: EmbeddedRedis
) -> None:
    """Defect: Redis paused 6.5 s during a submit; the client got 503 and the row was deleted,
    yet the create had run: the command ran, ended done and never showed in history."""
    stack.add_sim_device(device_name)
    payload = f"ECHO paused-{uuid.uuid4().hex[:6]}"
    sleeper = threading.Thread(target=_pause, args=(own_redis, 6.5))
    sleeper.start()
    time.sleep(0.3)  # the submission arrives while Redis is paused
    reply = stack.request(
        "POST", f"/devices/{device_name}/commands", body={"kind": "line", "payload": payload}
    )
    sleeper.join()
    if reply.status == 503:
        time.sleep(5)  # whatever was half-created would have run by now
        assert stack.sim_log(device_name).count(payload) == 0, "a 503 command ran"
        return
    assert reply.status == 202, reply.body
    command_id = reply.body["id"]
    assert reply.headers["Location"].endswith(command_id)
    assert _settled(stack, command_id)["state"] == "done"
    _wait_until(lambda: _recorded(stack), "the recorder catching up")
    assert _in_history(stack, device_name, command_id)
    assert stack.sim_log(device_name).count(payload) == 1


def test_a_command_finished_but_unrecorded_is_not_run_again_after_a_flush(
    stack: Stack, device_name: str, client: redis.Redis
) -> None:
    """Defect: with the server worker paused, a command finished (ledger still queued); after
    FLUSHALL recovery queued it again and the device ran it twice."""
    stack.add_sim_device(device_name)
    server_worker = stack.processes["server-worker"]
    server_worker.send_signal(signal.SIGSTOP)
    try:
        command_id = stack.submit(device_name, "ECHO run-once-please")
        _wait_until(lambda: _state(stack, command_id) == "done", "the command finishing")
        health = stack.request("GET", "/health").body
        assert health["recorder_pending"] > 0 and health["recorder_lag_s"] >= 0
        client.flushall()
    finally:
        server_worker.send_signal(signal.SIGCONT)
    ended = _settled(stack, command_id)
    assert ended["state"] == "interrupted", ended
    time.sleep(3)  # a second run would have reached the device by now
    assert stack.sim_log(device_name).count("ECHO run-once-please") == 1
    assert _state(stack, command_id) == "interrupted"


def test_a_reply_awaiting_manual_analysis_survives_a_flush(
    stack: Stack, device_name: str, client: redis.Redis
) -> None:
    """Defect: after FLUSHALL a command waiting for manual analysis stayed responded forever,
    and both analysis and cancel answered 409."""
    stack.add_sim_device(device_name)
    reply = stack.request(
        "POST",
        f"/devices/{device_name}/commands",
        body={"kind": "line", "payload": "MEAS:VOLT?", "analysis": {"analyzer": "manual"}},
    )
    command_id = reply.body["id"]
    _wait_until(lambda: _state(stack, command_id) == "responded", "the reply")
    _wait_until(lambda: _recorded(stack), "the recorder catching up")
    client.flushall()

    def analysed() -> bool:
        answer = stack.request("POST", f"/commands/{command_id}/analysis", body={"value": "ok"})
        return answer.status == 200

    _wait_until(analysed, "the analysis being accepted", timeout=30)
    done = _settled(stack, command_id)
    assert done["state"] == "done"
    assert done["analysis"]["value"] == "ok"
    assert done["response"]["text"]


def test_a_command_lost_while_epoch_survives_is_still_recovered(
    stack: Stack, device_name: str, client: redis.Redis
) -> None:
    """Defect: a partial loss that keeps `epoch` (the tail of an append-only file, a lagging
    replica) never triggered recovery: the command stayed queued forever."""
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "ECHO partly-lost")
    _wait_until(lambda: _recorded(stack), "the recorder catching up")
    prefix = stack.key_prefix
    assert client.exists(f"{prefix}:epoch")
    client.delete(f"{prefix}:cmd:{command_id}", f"{prefix}:cmd:{command_id}:log")
    client.delete(f"{prefix}:q:hwq.device.{device_name}")
    stack.start_worker(device_name)
    done = _settled(stack, command_id, timeout=90)
    assert done["state"] == "done", done
    assert done["response"]["text"] == "partly-lost"
    assert stack.sim_log(device_name).count("ECHO partly-lost") == 1


def test_a_reply_that_arrives_while_redis_is_down_is_recorded_once_it_is_back(
    stack: Stack, device_name: str, own_redis: EmbeddedRedis
) -> None:
    """Defect: a reply arriving while Redis was down for 5 s ended interrupted with the wrong
    error, and an idempotent command then ran twice."""
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "SLEEP 1500", timeout_s=15, idempotent=True)
    _wait_until(lambda: "SLEEP 1500" in stack.sim_log(device_name), "the command on the wire")
    own_redis.stop()  # the reply comes 1.5 s in, to a worker that cannot reach Redis
    time.sleep(7)
    own_redis.start()
    done = _settled(stack, command_id)
    assert done["state"] == "done", done
    assert done["attempts"] == 1
    assert done["response"]["text"] == "OK"
    time.sleep(3)
    assert stack.sim_log(device_name).count("SLEEP 1500") == 1


def test_new_commands_wait_with_retry_after_when_redis_is_nearly_full(
    stack: Stack, device_name: str, client: redis.Redis
) -> None:
    """Defect: Redis memory had no bound; a full Redis failed writes half way."""
    stack.add_sim_device(device_name, worker=False)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(int(used * 1.05)))
    try:
        time.sleep(1.5)  # the API's verdict is cached for a second
        reply = stack.request(
            "POST", f"/devices/{device_name}/commands", body={"kind": "line", "payload": "*IDN?"}
        )
        assert reply.status == 503, reply.body
        assert int(reply.headers["Retry-After"]) > 0
        assert reply.body["title"] == "Service unavailable"
    finally:
        client.config_set("maxmemory", "0")
    time.sleep(1.5)
    stack.submit(device_name, "*IDN?")
