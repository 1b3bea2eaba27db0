"""The parts the polling routes share with the front door: reply recording, Flower's task
events, and the Celery app that publishes analyses and events, made once per API app."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from celery import Celery
from flask import Flask, current_app

from api.context import EXTENSION_KEY
from tasks.celery_app import ANALYZE_TASK, PUBLISH_RETRY_POLICY, create_celery
from tasks.command_values import CommandValues
from tasks.poll_replies import PollReplies
from tasks.poll_task_events import PollTaskEvents
from tasks.queues import SERVER_QUEUE
from tasks.service import HwqService

# Key of the parts in `app.extensions`.
POLL_PARTS_KEY = "hwq.poll"
_making = threading.Lock()


@dataclass(frozen=True)
class PollParts:
    """What the polling routes need beyond the service."""

    celery: Celery
    replies: PollReplies
    events: PollTaskEvents


def poll_parts_of(app: Flask) -> PollParts:
    """The app's polling parts, made on first use."""
    with _making:
        parts = app.extensions.get(POLL_PARTS_KEY)
        if parts is None:
            service: HwqService = app.extensions[EXTENSION_KEY]
            parts = _make(service)
            app.extensions[POLL_PARTS_KEY] = parts
    return cast(PollParts, parts)


def poll_parts() -> PollParts:
    """The current app's polling parts."""
    return poll_parts_of(cast(Flask, current_app._get_current_object()))  # type: ignore[attr-defined]


def _make(service: HwqService) -> PollParts:
    celery = create_celery(service.settings)
    events = PollTaskEvents(celery)

    def analyse(command_id: str) -> None:
        celery.send_task(ANALYZE_TASK, args=[command_id], queue=SERVER_QUEUE, retry=True,
                         retry_policy=PUBLISH_RETRY_POLICY)  # fmt: skip

    def ended(values: CommandValues, state: str, reason: str, response: Any) -> None:
        events.ended(values["id"], values["device"], state, reason, response)

    return PollParts(celery, PollReplies(service.live, analyse, ended), events)
