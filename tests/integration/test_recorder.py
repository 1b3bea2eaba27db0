"""The recorder copies Redis transitions into SQL once and in order, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import inspect, select

from config import Settings
from tasks import recorder as recorder_module
from tasks.command_record import utc_now_iso
from tasks.db import ledger
from tasks.db.engine import checkpoint_passively, make_engine, make_sessions, migrate
from tasks.db.models import CommandEventRow
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.recorder import Recorder

from command_factory import command_values


def _setup(settings: Settings, redis_client: redis.Redis):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(redis_client, settings.key_prefix)
    return engine, sessions, live


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _accept(sessions, live: LiveStore, device: str = "dev0") -> str:  # type: ignore[no-untyped-def]
    values = command_values(device)
    with sessions() as session, session.begin():
        ledger.insert_command(session.connection(), values)
    live.put_device_config(device, {"name": device, "address": "loop://"})
    live.create(values, queue_cap=100)
    return str(values["id"])


def _accept_and_answer(sessions, live: LiveStore) -> str:  # type: ignore[no-untyped-def]
    """A command accepted, dispatched, answered with "hi" and done, in Redis only so far."""
    command_id = _accept(sessions, live)
    live.claim(command_id, "dev0@host")
    live.move(command_id, State.RESPONDED, State.DONE, fields={"response": {"text": "hi"}})
    return command_id


def test_every_transition_reaches_sql_in_order(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine, sessions, live = _setup(settings, redis_client)
    command_id = _accept_and_answer(sessions, live)
    recorder = Recorder(live, sessions, consumer="test")
    while recorder.record_once(block_ms=10):
        pass
    with sessions() as session:
        row = ledger.get_command(session, command_id)
        assert row is not None
        assert row.state == "done"
        assert row.response == {"text": "hi"}
        assert row.attempts == 1
        assert row.finished_at is not None
        assert [e["state"] for e in ledger.events(session, command_id)] == [
            "queued", "dispatched", "responded", "done",
        ]  # fmt: skip
    engine.dispose()


def test_a_commands_events_are_found_through_one_index(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Each event row the recorder writes updates as few B-trees as its reads need."""
    engine, sessions, live = _setup(settings, redis_client)
    # PostgreSQL lists a unique constraint's own index among the indexes as well.
    by_command = {
        index["name"]
        for index in inspect(engine).get_indexes("command_events")
        + inspect(engine).get_unique_constraints("command_events")
        if index["column_names"][0] == "command_id"
    }
    assert by_command == {"uq_command_events_seq"}
    if engine.dialect.name == "sqlite":
        query = (
            select(CommandEventRow)
            .where(CommandEventRow.command_id == "x")
            .order_by(CommandEventRow.seq)
        )
        with engine.connect() as connection:
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            plan = " ".join(
                row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
    engine.dispose()


def test_replayed_entries_change_nothing(settings: Settings, redis_client: redis.Redis) -> None:
    engine, sessions, live = _setup(settings, redis_client)
    command_id = _accept(sessions, live)
    live.move(command_id, State.CANCELLED)
    entries = [
        {"id": command_id, "seq": 2, "state": "cancelled", "at": utc_now_iso(), "detail": ""},
        {"id": command_id, "seq": 1, "state": "queued", "at": utc_now_iso(), "detail": ""},
    ]
    for batch in (entries, entries, entries[:1], entries[1:]):
        with sessions() as session, session.begin():
            ledger.record_transitions(session, batch)
    with sessions() as session:
        row = ledger.get_command(session, command_id)
        assert row is not None and row.state == "cancelled"
        assert len(ledger.events(session, command_id)) == 2
    engine.dispose()


def test_history_pages_newest_first_with_a_cursor(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine, sessions, live = _setup(settings, redis_client)
    ids = [_accept(sessions, live, device="pager") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    with sessions() as session:
        while True:
            rows, cursor = ledger.list_commands(
                session, device="pager", state=None, limit=2, cursor=cursor
            )
            seen += [r.id for r in rows]
            if cursor is None:
                break
    assert seen == list(reversed(ids))
    engine.dispose()


def test_the_recorder_moves_the_write_ahead_log_into_the_database(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "hwq.db"
    # As the server worker makes it: every transaction takes the write lock when it begins.
    engine = make_engine(f"sqlite:///{database}", writes_first=True)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(redis_client, key_prefix)
    checkpoint_passively(engine)
    settled = _digest(database)
    _accept_and_answer(sessions, live)
    # Commits leave the database file alone: the API's submissions never copy the log.
    assert _digest(database) == settled
    monkeypatch.setattr(recorder_module, "CHECKPOINT_EVERY_S", 0.0)
    recorder = Recorder(live, sessions, consumer="test")
    while recorder.record_once(block_ms=10):
        pass
    assert _digest(database) != settled
    log_pages, copied = checkpoint_passively(engine) or (-1, -2)
    assert log_pages == copied
    engine.dispose()


def test_the_running_recorder_records_while_yielding_the_cpu(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine, sessions, live = _setup(settings, redis_client)
    command_id = _accept_and_answer(sessions, live)
    stop = threading.Event()
    thread = threading.Thread(
        target=Recorder(live, sessions, consumer="test").run, args=(stop,), daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        state = None
        while state != "done" and time.monotonic() < deadline:
            with sessions() as session:
                row = ledger.get_command(session, command_id)
                state = row.state if row else None
            time.sleep(0.05)
        assert state == "done"
        if hasattr(os, "SCHED_IDLE"):
            assert thread.native_id is not None
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_IDLE
            # The SQL transaction, which holds the writer lock submissions wait on, does not
            # run at that priority.
            writers = [t for t in threading.enumerate() if t.name.startswith("hwq-ledger")]
            assert writers and writers[0].native_id is not None
            assert os.sched_getscheduler(writers[0].native_id) == os.SCHED_OTHER
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    engine.dispose()
