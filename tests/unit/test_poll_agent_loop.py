"""The polling agent against a scripted HTTP server: replies posted again, never rerun, not
even by an agent started again over the same journal; its imports stay light."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from hwq.poll_agent import STARTED_BEFORE_ERROR, ApiConnection, PollAgent, api_base
from hwq.poll_journal import StartedJournal
from tests.unit.canned_http_server import CannedHttpServer

COMMAND = {"id": "c1", "kind": "line", "payload": "ECHO hi", "timeout_s": 5}


def _agent(
    server: CannedHttpServer, runs: list[dict[str, Any]], journal: StartedJournal | None = None
) -> PollAgent:
    def run(command: dict[str, Any]) -> dict[str, Any]:
        runs.append(command)
        return {"text": "hi"}

    api = ApiConnection(server.url, "hwq_secret")
    agent = PollAgent("dev1", api, run, wait_s=1, journal=journal)
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


def test_an_agent_started_again_answers_a_command_it_had_started_and_does_not_run_it(
    tmp_path: Path,
) -> None:
    journal_path = tmp_path / "state" / "poll-dev1.journal"
    runs: list[dict[str, Any]] = []
    with CannedHttpServer() as server:
        # The first run of the agent starts c1 and is gone before its reply is taken.
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 204, b"")
        server.reply("POST", "/api/v1/commands/c1/response", 409, {"title": "Conflict"})
        _run_until(_agent(server, runs, StartedJournal(journal_path)), lambda: runs)
    assert len(runs) == 1
    assert journal_path.read_text() == "c1\n"

    with CannedHttpServer() as server:
        # Its next run, over the same journal, is handed c1 again, then a new command.
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 200, {**COMMAND, "id": "c2"})
        server.reply("GET", "/api/v1/devices/dev1/next", 204, b"")
        server.reply("POST", "/api/v1/commands/c1/response", 200, {"state": "failed"})
        server.reply("POST", "/api/v1/commands/c2/response", 200, {"state": "done"})
        agent = _agent(server, runs, StartedJournal(journal_path))
        _run_until(agent, lambda: [r.method for r in server.requests].count("POST") >= 2)
        posts = {r.path: r.body for r in server.requests if r.method == "POST"}
    assert [run["id"] for run in runs] == ["c1", "c2"]
    assert posts["/api/v1/commands/c1/response"] == {"error": STARTED_BEFORE_ERROR}
    assert posts["/api/v1/commands/c2/response"] == {"text": "hi"}
    assert journal_path.read_text() == "c1\nc2\n"


def test_a_command_whose_start_cannot_be_written_down_is_refused_not_run(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    runs: list[dict[str, Any]] = []
    with CannedHttpServer() as server:
        server.reply("GET", "/api/v1/devices/dev1/next", 200, COMMAND)
        server.reply("GET", "/api/v1/devices/dev1/next", 204, b"")
        server.reply("POST", "/api/v1/commands/c1/response", 200, {"state": "failed"})
        agent = _agent(server, runs, StartedJournal(blocker / "poll-dev1.journal"))
        _run_until(agent, lambda: any(r.method == "POST" for r in server.requests))
        post = next(r for r in server.requests if r.method == "POST")
    assert runs == []
    assert "cannot record" in post.body["error"]


def test_the_journal_keeps_the_newest_ids_and_compacts_its_file(tmp_path: Path) -> None:
    path = tmp_path / "poll-dev1.journal"
    journal = StartedJournal(path, keep=3)
    for i in range(7):
        journal.record(f"c{i}")
    assert "c0" not in journal and "c6" in journal
    # Seven lines passed twice the three kept: the file was rewritten to the newest three.
    assert path.read_text().splitlines() == ["c4", "c5", "c6"]
    again = StartedJournal(path, keep=3)
    assert [i for i in ("c3", "c4", "c5", "c6") if i in again] == ["c4", "c5", "c6"]


def test_api_base_accepts_the_root_or_the_api_path() -> None:
    assert api_base("http://h:8000") == "http://h:8000/api/v1"
    assert api_base("http://h:8000/api/v1/") == "http://h:8000/api/v1"


def test_the_agent_loads_none_of_the_server_stack() -> None:
    code = (
        "import sys\n"
        "import hwq.cli, hwq.cli.poll_device, hwq.poll_agent, hwq.poll_runner, hwq.poll_journal\n"
        "heavy = ('celery', 'kombu', 'sqlalchemy', 'flask', 'redis', 'pydantic', 'serial')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == ""
