"""Keeps what a long-running process built at startup out of the cyclic garbage collector.

An API process holds a great many objects once Flask, SQLAlchemy, pydantic and Celery are
loaded, and a full collection walks them all, during which the process answers nothing. Such
collections came every few hundred requests (bench/README.md has the figures). Objects made
at startup live as long as the process, so once it is ready they are frozen: collections then
walk only what was made since.
"""

from __future__ import annotations

import gc
from typing import Any

from celery import signals


def freeze_startup_objects() -> None:
    """Collect what startup left behind, then exempt everything still alive from collection."""
    gc.collect()
    gc.freeze()


def freeze_when_worker_ready() -> None:
    """Freeze a Celery worker's startup objects once it is ready to take work."""

    def on_ready(**_: Any) -> None:
        freeze_startup_objects()

    signals.worker_ready.connect(on_ready, weak=False)
