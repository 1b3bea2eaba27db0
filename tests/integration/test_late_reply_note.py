"""A late reply is kept as an event of the command it answers, live and in the ledger, and the
command's terminal state stays as it was. Real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import redis

from config import Settings
from tasks.db import ledger
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.recorder import Recorder

from command_factory import command_values

DEVICE = "dev0"
LATE = 'late_reply: {"text": "OK"}'


def test_a_late_reply_is_an_event_of_its_timed_out_command_in_redis_and_sql(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(redis_client, settings.key_prefix)
    values = command_values(DEVICE, payload="SLEEP 4000", timeout_s=0.5)
    command_id = str(values["id"])
    with sessions() as session, session.begin():
        ledger.insert_command(session.connection(), values)
    live.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    assert live.create(values, queue_cap=100).moved
    live.claim(command_id, f"{DEVICE}@host")
    error = "no complete reply within 0.5 s"
    live.move(command_id, State.TIMED_OUT, detail=error, fields={"error": error})

    noted = live.note(command_id, LATE)

    assert noted.moved and noted.state == State.TIMED_OUT
    command = live.get(command_id)
    assert command is not None and command["state"] == State.TIMED_OUT
    assert command["error"] == error and "response" not in command
    expected = [("queued", "accepted"), ("dispatched", f"claimed by {DEVICE}@host"),
                ("timed_out", error), ("timed_out", LATE)]  # fmt: skip
    assert [(e["state"], e["detail"]) for e in live.events(command_id)] == expected
    recorder = Recorder(live, sessions, consumer="test")
    while recorder.record_once(block_ms=10):
        pass
    with sessions() as session:
        row = ledger.get_command(session, command_id)
        assert row is not None and row.state == "timed_out" and row.response is None
        assert [(e["state"], e["detail"]) for e in ledger.events(session, command_id)] == expected
    engine.dispose()


def test_a_note_for_a_command_redis_does_not_hold_is_not_kept(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    live = LiveStore(redis_client, key_prefix)
    result = live.note("no-such-command", LATE)
    assert not result.moved and not result.exists
