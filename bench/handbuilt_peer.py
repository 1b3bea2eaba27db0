"""The hand-built peer: what one writes without hwq to put an instrument behind HTTP.

A Flask endpoint calls a Celery task that does the pyserial write and read, and waits for its
result (`delay().get()`); gunicorn serves the endpoint, one Celery worker holds the port, Redis
is broker and result backend. `bench/peer_latency.py` runs it beside hwq.

    HANDBUILT_BROKER_URL=redis://… HANDBUILT_PORT=/dev/pts/7 \\
        celery -A bench.handbuilt_peer worker --pool solo
    HANDBUILT_BROKER_URL=redis://… gunicorn -k gthread --threads 8 bench.handbuilt_peer:web
"""

from __future__ import annotations

import os
from typing import Any

import serial
from celery import Celery
from flask import Flask, request

BROKER = os.environ.get("HANDBUILT_BROKER_URL", "redis://127.0.0.1:6379/15")
# How long the endpoint waits for the task's result, and the port for its reply line.
REPLY_TIMEOUT_S = 10.0

celery_app = Celery("handbuilt", broker=BROKER, backend=BROKER, set_as_current=False)
celery_app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    broker_transport_options={"global_keyprefix": "handbuilt:"},
    worker_hijack_root_logger=False,
)
# What `celery -A bench.handbuilt_peer` looks for.
app = celery_app

_port: serial.Serial | None = None


@celery_app.task(name="handbuilt.query")
def query(line: str) -> str:
    """Write one line to the instrument and return the line it answers."""
    global _port
    if _port is None:  # opened once per worker process and kept, as a real one would
        _port = serial.Serial(os.environ["HANDBUILT_PORT"], timeout=REPLY_TIMEOUT_S)
    _port.write(f"{line}\n".encode())
    reply: bytes = _port.readline()
    return reply.decode().rstrip("\r\n")


web = Flask(__name__)


@web.post("/query")
def run_query() -> dict[str, Any]:
    """Run one line on the instrument and answer its reply."""
    payload = str((request.get_json(silent=True) or {}).get("payload", ""))
    return {"text": query.delay(payload).get(timeout=REPLY_TIMEOUT_S)}
