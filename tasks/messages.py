"""The Celery message that runs a command, built here so it can be queued in the same atomic
step that creates the command's live state.

It is the message `send_task("hwq.execute", args=[id], task_id=id)` would publish through
kombu's Redis transport (Celery protocol 2, JSON body, base64 body encoding); building it
ourselves saves kombu's per-publish binding look-ups and a Redis round trip on every submit.
The end-to-end tests run every command through real Celery workers, which keeps it honest.
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
