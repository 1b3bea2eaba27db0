"""The reaper publishes again a queued command whose message a dying worker took with it."""

from __future__ import annotations

import json

import redis

from config import Settings
from tasks.db import ledger
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.live_store import LiveStore
from tasks.reaper import Reaper

from command_factory import command_values

DEVICE = "dev0"


def _stores(settings: Settings, redis_client: redis.Redis):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    return engine, make_sessions(engine), LiveStore(redis_client, settings.key_prefix)


def _accept(sessions, live: LiveStore) -> str:  # type: ignore[no-untyped-def]
    """A command accepted as the API accepts one: ledger row, live state and its message."""
    values = command_values(DEVICE)
    with sessions() as session, session.begin():
        ledger.insert_command(session.connection(), values)
    live.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    live.create(values, queue_cap=100, enqueue=live.execute_message(values["id"], DEVICE))
    return str(values["id"])


def _queued_message_ids(live: LiveStore) -> list[str]:
    raw = live.redis.lrange(live.broker_queue_key(DEVICE), 0, -1)
    return [json.loads(message)["headers"]["id"] for message in raw]


def test_a_message_popped_by_a_worker_that_died_is_published_again(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine, sessions, live = _stores(settings, redis_client)
    command_id = _accept(sessions, live)
    # What a device worker's pop does; the worker then dies before its claim.
    assert redis_client.rpop(live.broker_queue_key(DEVICE)) is not None

    Reaper(live, sessions, orphan_age_s=3600).republish_orphans()
    assert _queued_message_ids(live) == [], "a young queued command is left alone"

    Reaper(live, sessions, orphan_age_s=0).republish_orphans()
    assert _queued_message_ids(live) == [command_id]
    values = live.get(command_id)
    assert values is not None and values["state"] == "queued"
    engine.dispose()


def test_a_command_whose_message_is_still_queued_is_not_published_twice(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine, sessions, live = _stores(settings, redis_client)
    command_id = _accept(sessions, live)

    Reaper(live, sessions, orphan_age_s=0).republish_orphans()
    assert _queued_message_ids(live) == [command_id]
    engine.dispose()
