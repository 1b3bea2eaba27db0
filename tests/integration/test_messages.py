"""The message that runs a command: the one Celery would publish, and read back by its id."""

from __future__ import annotations

import json
import uuid

import redis

from config import Settings
from tasks.celery_app import EXECUTE_TASK, broker_key_prefix, create_celery
from tasks.messages import command_of, execute_message
from tasks.queues import device_queue

DEVICE = "dev0"
# Fields that differ between any two publishers or publishes: who sent it, where results
# would go (the sending app's own id; hwq's commands return none), the delivery's own tag.
PER_PUBLISH = {("headers", "origin"), ("properties", "reply_to"), ("properties", "delivery_tag")}


def _without_per_publish(message: bytes | str) -> dict[str, object]:
    envelope = json.loads(message)
    for part, field in PER_PUBLISH:
        envelope[part].pop(field)
    return dict(envelope)


def test_hwq_builds_the_message_celery_publishes(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    app = create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))
    command_id = str(uuid.uuid4())
    queue = device_queue(DEVICE)
    app.send_task(
        EXECUTE_TASK, args=[command_id], task_id=command_id, queue=queue, ignore_result=True
    )
    published = redis_client.rpop(broker_key_prefix(key_prefix) + queue)
    assert published is not None
    built = execute_message(command_id, queue)
    assert _without_per_publish(built) == _without_per_publish(published)
    assert command_of(published) == command_of(built.encode()) == command_id


def test_what_is_no_command_message_reads_as_none() -> None:
    built = json.loads(execute_message(str(uuid.uuid4()), device_queue(DEVICE)))
    other_task = {**built, "headers": {**built["headers"], "task": "hwq.analyze"}}
    for message in (b"", b"not json", b"[]", b'{"headers": {}}', json.dumps(other_task).encode()):
        assert command_of(message) is None, message
