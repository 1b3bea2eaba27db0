"""hwq.host_sync messages: ordinary Celery messages on the host's queue; a failure to send one
is logged and loses nothing."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
import redis

from config import Settings
from hwq.embedded_redis import free_port
from tasks.celery_app import broker_key_prefix
from tasks.device_control import HOST_SYNC_TASK, HostSync
from tasks.queues import host_queue


def test_one_message_per_host_and_device_on_the_hosts_queue(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    sync = HostSync(Settings(redis_url=redis_url, key_prefix=key_prefix))
    sync.send([("pi-3", "dmm"), ("pi-3", "dmm"), ("pi-4", "dmm"), (None, "psu")])
    queue = broker_key_prefix(key_prefix) + host_queue("pi-3")
    messages = [json.loads(raw) for raw in redis_client.lrange(queue, 0, -1)]
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == HOST_SYNC_TASK
    args, kwargs, _ = json.loads(base64.b64decode(messages[0]["body"]))
    assert (args, kwargs) == ([], {"device": "dmm"})
    assert redis_client.llen(broker_key_prefix(key_prefix) + host_queue("pi-4")) == 1


def test_a_broker_out_of_reach_is_logged_not_raised(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A port nothing listens on: every connection is refused.
    sync = HostSync(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", key_prefix=key_prefix))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="hwq.control"):
        sync.send([("pi-3", "dmm")])
    assert time.monotonic() - started < 30
    record = next(r for r in caplog.records if r.name == "hwq.control")
    assert record.__dict__["device"] == "dmm" and record.__dict__["host"] == "pi-3"
