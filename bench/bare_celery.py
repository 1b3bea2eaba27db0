"""A bare Celery app with one echo task: the yardstick hwq's orchestration is measured against."""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")

app = Celery("bare", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    broker_transport_options={"global_keyprefix": "bare:"},
    worker_hijack_root_logger=False,
)


@app.task(name="bare.echo")
def echo(text: str) -> str:
    """Return the text: the smallest task a round trip can carry."""
    return text
