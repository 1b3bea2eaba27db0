"""The polling agent against a scripted HTTP server: replies posted again, never rerun; its
imports stay light."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from hwq.poll_agent import ApiConnection, PollAgent, api_base
from tests.unit.canned_http_server import CannedHttpServer

COMMAND = {"id": "c1", "kind": "line", "payload": "ECHO hi", "timeout_s": 5}


def _agent(server: CannedHttpServer, runs: list[dict[str, Any]]) -> PollAgent:
    def run(command: dict[str, Any]) -> dict[str, Any]:
        runs.append(command)
        return {"text": "hi"}

    agent = PollAgent("dev1", ApiConnection(server.url, "hwq_secret"), run, wait_s=1)
    # Short pauses keep the test quick; the backoff still doubles from here.
    agent._backoff_s = 0.01
    return agent


def _run_until(agent: PollAgent, done: Any, seconds: float = 20) -> None:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        for _ in range(int(seconds / 0.05)):
            if done():
                break
            threading.Event().wait(0.05)
    finally:
        agent.stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_failed_post_is_retried_and_the_command_runs_once() -> None:
    runs: list[dict[str, Any]] = []
    with CannedHttpServer() as server:
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 204, b"")
        server.reply("POST", "/api/v1/commands/c1/response", 503, {"title": "down"})
        server.reply("POST", "/api/v1/commands/c1/response", 502, {"title": "down"})
        server.reply("POST", "/api/v1/commands/c1/response", 200, {"state": "done"})
        agent = _agent(server, runs)

        def posted() -> bool:
            return [r.method for r in server.requests].count("POST") >= 3

        _run_until(agent, posted)
        posts = [r for r in server.requests if r.method == "POST"]
    assert len(runs) == 1
    assert len(posts) == 3
    assert all(p.body == {"text": "hi"} for p in posts)
    assert all(p.headers["authorization"] == "Bearer hwq_secret" for p in posts)


def test_a_command_handed_over_again_is_answered_not_rerun() -> None:
    runs: list[dict[str, Any]] = []
    with CannedHttpServer() as server:
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 204, b"")
        server.reply("POST", "/api/v1/commands/c1/response", 409, {"title": "Conflict"})
        agent = _agent(server, runs)
        _run_until(agent, lambda: [r.method for r in server.requests].count("POST") >= 2)
    assert len(runs) == 1


def test_the_agent_keeps_polling_while_the_api_is_away() -> None:
    runs: list[dict[str, Any]] = []
    with CannedHttpServer() as server:
        server.reply("GET", "/api/v1/devices/dev1/next", 503, {"title": "away"})
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 204, b"")
        server.reply("POST", "/api/v1/commands/c1/response", 200, {"state": "done"})
        agent = _agent(server, runs)
        _run_until(agent, lambda: any(r.method == "POST" for r in server.requests))
    assert len(runs) == 1


def test_api_base_accepts_the_root_or_the_api_path() -> None:
    assert api_base("http://h:8000") == "http://h:8000/api/v1"
    assert api_base("http://h:8000/api/v1/") == "http://h:8000/api/v1"


def test_the_agent_loads_none_of_the_server_stack() -> None:
    code = (
        "import sys\n"
        "import hwq.cli, hwq.cli.poll_device, hwq.poll_agent, hwq.poll_runner\n"
        "heavy = ('celery', 'kombu', 'sqlalchemy', 'flask', 'redis', 'pydantic', 'serial')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == ""
