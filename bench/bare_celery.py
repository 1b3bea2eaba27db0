"""A bare Celery app with one echo task: the yardstick hwq's orchestration is measured against."""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")
ECHO_TASK = "bare.echo"


def echo(text: str) -> str:
    """Return the text: the smallest task a round trip can carry."""
    return text


def make_app(url: str) -> Celery:
    """A bare Celery app on `url` with the echo task; clients make one per Redis they use."""
    bare = Celery("bare", broker=url, backend=url, set_as_current=False)
    bare.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_transport_options={"global_keyprefix": "bare:"},
        worker_hijack_root_logger=False,
    )
    bare.task(name=ECHO_TASK)(echo)
    return bare


# What `celery -A bench.bare_celery worker` runs.
app = make_app(BROKER)
