"""A catastrophic `regex` analysis must not freeze the server worker, nor come back forever.

Defect: `ECHO` of 36 `a`s and `!` analysed with `^(a+)+$` spun the server worker at 100 %:
Flower showed it offline, other users' analyses and the recorder stopped, and after a
`kill -9` the redelivered message froze the next worker again.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bench.local_stack import Stack, running_stack
from config import Settings
from tasks.celery_app import ANALYZE_TASK, create_celery
from tasks.queues import SERVER_QUEUE
from tasks.server_worker import MAX_ANALYSIS_ATTEMPTS, analysis_attempts_key

# Long enough that everything else in a test happens while the catastrophic analysis runs.
ANALYSIS_TIMEOUT_S = 30
CATASTROPHIC = {"analyzer": "regex", "params": {"pattern": "^(a+)+$"}}
EVIL_REPLY = "ECHO " + "a" * 36 + "!"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The module's stack, with analyses allowed ANALYSIS_TIMEOUT_S seconds."""
    home = tmp_path_factory.mktemp("hwq-home")
    with running_stack(home, redis_url, HWQ_ANALYSIS_TIMEOUT_S=str(ANALYSIS_TIMEOUT_S)) as running:
        yield running


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.2)


def ledger_state(stack: Stack, command_id: str) -> str | None:
    """The command's state in the SQL ledger, read straight from the SQLite file."""
    with sqlite3.connect(stack.home / "hwq.db") as connection:
        row = connection.execute(
            "SELECT state FROM commands WHERE id = ?", (command_id,)
        ).fetchone()
    return row[0] if row else None


def state_of(stack: Stack, command_id: str) -> str:
    return str(command(stack, command_id)["state"])


def command(stack: Stack, command_id: str) -> dict[str, Any]:
    return dict(stack.request("GET", f"/commands/{command_id}").body)


def finished(stack: Stack, command_id: str, timeout: float) -> dict[str, Any]:
    """The command once it is done, polled (a long-poll beyond 5 s is another matter)."""
    eventually(lambda: state_of(stack, command_id) == "done", "the end", timeout)
    return command(stack, command_id)


def start_analysis(stack: Stack, device: str) -> str:
    command_id = stack.submit(device, EVIL_REPLY, analysis=CATASTROPHIC)
    eventually(lambda: state_of(stack, command_id) == "responded", "the reply")
    return command_id


def test_a_catastrophic_regex_leaves_other_analyses_and_the_recorder_running(
    stack: Stack, device_name: str
) -> None:
    other = f"{device_name}x"
    stack.add_sim_device(device_name)
    stack.add_sim_device(other)
    slow = start_analysis(stack, device_name)

    # Another user's commands, analysed and recorded while the regex runs.
    number = stack.submit(
        other, "MEAS:VOLT?", analysis={"analyzer": "number", "params": {"min": 0, "max": 5}}
    )
    regex = stack.submit(
        other, "ECHO ok 42", analysis={"analyzer": "regex", "params": {"pattern": r"ok (\d+)"}}
    )
    plain = stack.submit(other, "*IDN?")
    assert finished(stack, number, 20)["analysis"]["value"]["within"] is True
    assert finished(stack, regex, 20)["analysis"]["value"] == {
        "match": True,
        "groups": ["42"],
        "passed": True,
    }
    assert finished(stack, plain, 20)["state"] == "done"
    for command_id in (number, regex, plain):
        eventually(lambda c=command_id: ledger_state(stack, c) == "done", "the ledger row", 20)

    # The worker still answers remote control (what Flower's worker page shows).
    app = create_celery(Settings(redis_url=stack.redis_url, key_prefix=stack.key_prefix))
    assert app.control.ping(destination=["server@e2e"], timeout=5) == [
        {"server@e2e": {"ok": "pong"}}
    ]
    # All of that happened while the catastrophic analysis was still running.
    assert state_of(stack, slow) == "responded"

    ended = finished(stack, slow, ANALYSIS_TIMEOUT_S + 60)
    error = ended["analysis"]["value"]["error"]
    assert f"did not finish within {ANALYSIS_TIMEOUT_S} s" in error
    eventually(lambda: ledger_state(stack, slow) == "done", "the ledger row of the regex", 20)


def test_an_analysis_whose_worker_dies_each_time_is_abandoned(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    slow = start_analysis(stack, device_name)
    attempts = redis.Redis.from_url(stack.redis_url)
    key = analysis_attempts_key(stack.key_prefix, slow)
    app = create_celery(Settings(redis_url=stack.redis_url, key_prefix=stack.key_prefix))

    for attempt in range(1, MAX_ANALYSIS_ATTEMPTS + 1):
        eventually(lambda a=attempt: int(attempts.get(key) or 0) >= a, f"attempt {attempt}")
        stack.stop("server-worker", signal.SIGKILL)
        stack.spawn("server-worker", "server-worker")
        # kombu hands the unacknowledged message out again once its visibility timeout has
        # passed (an hour); publishing it again is what that redelivery does, sooner.
        app.send_task(ANALYZE_TASK, args=[slow], queue=SERVER_QUEUE)

    ended = finished(stack, slow, 90)
    assert "analysis abandoned" in ended["analysis"]["value"]["error"]
    details = [
        event["detail"] for event in stack.request("GET", f"/commands/{slow}/events").body["items"]
    ]
    assert details[-1] == "analysis by regex abandoned"

    # The new worker analyses the next command as usual.
    after = stack.submit(
        device_name, "ECHO fine", analysis={"analyzer": "equals", "params": {"expected": "fine"}}
    )
    assert finished(stack, after, 60)["analysis"]["value"] == {"equal": True, "passed": True}
