"""`hwq flower` beside a test stack, read and driven through Flower's own HTTP API."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness_http import http
from bench.local_stack import Stack
from hwq.embedded_redis import free_port

# Flower records only the events it sees; a command is shown within this long of its end.
SHOWN_WITHIN_S = 30.0


class FlowerWatch:
    """A Flower process of a stack, with its login, answering on a port of its own."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        login = f"admin:{uuid.uuid4().hex}"
        # `hwq flower` takes its login from HOME/flower.auth when HWQ_FLOWER_AUTH is unset.
        (stack.home / "flower.auth").write_text(login + "\n")
        self.authorization = "Basic " + base64.b64encode(login.encode()).decode()
        stack.spawn("flower", "flower", "--port", str(self.port), "--address", "127.0.0.1",
                    with_database=False)  # fmt: skip
        stack.wait_for(lambda: self.call("GET", "/api/tasks")[0] == 200, "Flower")

    def call(self, method: str, path: str) -> tuple[int, Any]:
        """One request to Flower, logged in: its status and its body (JSON when it is)."""
        reply = http(
            method,
            f"http://127.0.0.1:{self.port}{path}",
            raw=b"" if method == "POST" else None,
            headers={"Authorization": self.authorization},
            timeout=30,
        )
        return reply.status, reply.body

    def task(self, command_id: str) -> dict[str, Any] | None:
        """What Flower shows of a command's task, or None while it knows none."""
        status, body = self.call("GET", f"/api/task/info/{command_id}")
        return body if status == 200 and isinstance(body, dict) else None

    def wait_task(
        self,
        command_id: str,
        shown: Callable[[dict[str, Any]], bool],
        timeout: float = SHOWN_WITHIN_S,
    ) -> dict[str, Any]:
        """The command's task once `shown(task)` holds; fails with what Flower shows if never."""
        deadline = time.monotonic() + timeout
        task = None
        while time.monotonic() < deadline:
            task = self.task(command_id)
            if task is not None and shown(task):
                return task
            time.sleep(0.3)
        raise AssertionError(f"Flower shows {command_id} as {task!r}")

    def follow(self, device: str) -> None:
        """Wait until Flower sees the device's commands: it counts only events after it starts."""
        for _ in range(6):
            command_id = self.stack.submit(device, "*IDN?")
            self.stack.wait(command_id)
            try:
                self.wait_task(command_id, lambda task: task["state"] == "SUCCESS", timeout=10)
                return
            except AssertionError:
                continue
        raise AssertionError(f"Flower never showed a command of {device}")

