"""The recorder counts each command's ending once, in Redis, for /metrics to read."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config import Settings
from tasks.command_metrics import DONE_SECONDS_BUCKETS, bucket_field, read_outcomes
from tasks.db import ledger
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.recorder import Recorder

from command_factory import command_values


def _accept(sessions: Any, live: LiveStore) -> str:
    values = command_values("dev0")
    with sessions() as session, session.begin():
        ledger.insert_command(session.connection(), values)
    live.put_device_config("dev0", {"name": "dev0", "address": "loop://"})
    live.create(values, queue_cap=100)
    return str(values["id"])


def _done(sessions: Any, live: LiveStore) -> str:
    command_id = _accept(sessions, live)
    live.claim(command_id, "dev0@host")
    live.move(command_id, State.RESPONDED, State.DONE, fields={"response": {"text": "hi"}})
    return command_id


def _record_all(recorder: Recorder) -> None:
    while recorder.record_once(block_ms=10):
        pass


def test_endings_are_counted_by_state_and_done_ones_timed(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(redis_client, settings.key_prefix)
    _done(sessions, live)
    _done(sessions, live)
    live.move(_accept(sessions, live), State.CANCELLED, expected=(State.QUEUED,))

    _record_all(Recorder(live, sessions, consumer="test"))

    finished, done = read_outcomes(redis_client, settings.key_prefix)
    assert finished["done"] == 2 and finished["cancelled"] == 1
    assert finished["failed"] == 0  # every terminal state is there, 0 when none
    assert done.count == 2 and done.total >= 0
    assert done.buckets[-1] == ("+Inf", 2)
    engine.dispose()


def test_a_batch_replayed_after_a_crash_is_counted_once(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(redis_client, settings.key_prefix)
    _done(sessions, live)

    def crash(_batch: object) -> None:
        raise RuntimeError("the server worker died after writing SQL, before acknowledging")

    with pytest.raises(RuntimeError):
        Recorder(live, sessions, consumer="test", on_recorded=crash).record_once(block_ms=10)
    assert read_outcomes(redis_client, settings.key_prefix)[0]["done"] == 0

    _record_all(Recorder(live, sessions, consumer="test"))  # the same consumer, restarted

    finished, done = read_outcomes(redis_client, settings.key_prefix)
    assert finished["done"] == 1 and done.count == 1
    engine.dispose()


def test_durations_fall_in_the_bucket_of_their_upper_bound() -> None:
    assert bucket_field(0.0) == "le:0.005"
    assert bucket_field(0.005) == "le:0.005"
    assert bucket_field(0.0051) == "le:0.01"
    assert bucket_field(DONE_SECONDS_BUCKETS[-1] + 1) == "le:+Inf"
