"""The Celery message that runs a command, built here so it can be queued in the same atomic
step that creates the command's live state.

It is the message `send_task("hwq.execute", args=[id], task_id=id, ignore_result=True)`
would publish through kombu's Redis transport (Celery protocol 2, JSON body, base64 body
encoding); building it ourselves saves kombu's per-publish binding look-ups and a Redis round
trip on every submit. A test compares it with what `send_task` publishes, which keeps it
honest. A device worker's command thread reads the command back out of it (`command_of`).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid

from tasks.celery_app import EXECUTE_TASK

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


def execute_message(command_id: str, queue: str) -> str:
    """The serialized message that makes a device worker run `command_id`."""
    body = json.dumps(
        [[command_id], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": EXECUTE_TASK,
            "id": command_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": command_id,
            "parent_id": None,
            "argsrepr": repr([command_id]),
            "kwargsrepr": "{}",
            "origin": _ORIGIN,
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": command_id,
            "reply_to": None,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message, separators=(",", ":"))


def command_of(message: bytes) -> str | None:
    """The command a device queue's message runs, or None if it is no such message."""
    try:
        envelope = json.loads(message)
        headers = envelope["headers"]
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    except (ValueError, TypeError, KeyError):
        return None
    if headers.get("task") != EXECUTE_TASK or not isinstance(args, list) or len(args) != 1:
        return None
    command_id = args[0]
    return command_id if isinstance(command_id, str) else None
