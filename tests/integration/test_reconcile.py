"""The recorder lets finished commands leave Redis; the reaper's reconcile sweep restores
unfinished ledger rows that lost their live state, and ends those it cannot safely restore."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from config import Settings
from hwq.embedded_redis import EmbeddedRedis
from tasks.db import ledger, registry
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.errors import StoreNearlyFull
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.reaper import Reaper
from tasks.recorder import RECORDED_TTL_S, Recorder
from tasks.store_health import AdmissionGuard

from command_factory import command_values

DEVICE = "dev0"


@pytest.fixture
def stores(settings: Settings, redis_client: redis.Redis):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    with sessions() as session, session.begin():
        registry.add_device(session, {"name": DEVICE, "address": "loop://"})
    yield sessions, LiveStore(redis_client, settings.key_prefix)
    engine.dispose()


def _accept(sessions, live: LiveStore, **extra: object) -> str:  # type: ignore[no-untyped-def]
    values = command_values(DEVICE, created_at="2026-01-01T00:00:00.000000Z", **extra)
    with sessions() as session, session.begin():
        ledger.insert_command(session.connection(), values)
    live.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    live.create(values, queue_cap=100, enqueue=live.execute_message(values["id"], DEVICE))
    return str(values["id"])


def _record_all(sessions, live: LiveStore) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder(live, sessions, consumer="test")
    while recorder.record_once(block_ms=10):
        pass


def _ledger_state(sessions, command_id: str) -> str:  # type: ignore[no-untyped-def]
    with sessions() as session:
        row = ledger.get_command(session, command_id)
        assert row is not None
        return str(row.state)


def test_a_finished_command_leaves_redis_soon_after_it_is_recorded(stores) -> None:  # type: ignore[no-untyped-def]
    """Defect: finished commands kept their hash, log and wake stream for 24 h."""
    sessions, live = stores
    command_id = _accept(sessions, live)
    live.claim(command_id, "dev0@host")
    live.move(command_id, State.RESPONDED, State.DONE, fields={"response": {"text": "hi"}})
    assert live.redis.ttl(live.command_key(command_id)) > RECORDED_TTL_S
    _record_all(sessions, live)
    for key in (live.command_key(command_id), live.log_key(command_id), live.wake_key(command_id)):
        assert 0 < live.redis.ttl(key) <= RECORDED_TTL_S


def test_a_queued_command_lost_while_epoch_stays_is_restored(stores) -> None:  # type: ignore[no-untyped-def]
    """Defect: a partial loss that kept `epoch` never triggered recovery."""
    sessions, live = stores
    command_id = _accept(sessions, live)
    _record_all(sessions, live)
    live.redis.set(f"{live.prefix}:epoch", "now")
    live.redis.delete(live.command_key(command_id), live.broker_queue_key(DEVICE))
    reaper = Reaper(live, sessions, reconcile_grace_s=0)
    reaper.reconcile()  # first seen missing
    reaper.reconcile()  # still missing, and nothing older waits for the recorder
    restored = live.get(command_id)
    assert restored is not None and restored["state"] == State.QUEUED
    assert live.redis.llen(live.broker_queue_key(DEVICE)) == 1


def test_a_responded_command_lost_in_a_flush_comes_back_responded(stores) -> None:  # type: ignore[no-untyped-def]
    """Defect: after FLUSHALL a command awaiting manual analysis stayed responded forever."""
    sessions, live = stores
    command_id = _accept(sessions, live, analysis={"analyzer": "manual", "value": None})
    live.claim(command_id, "dev0@host")
    live.move(command_id, State.RESPONDED, fields={"response": {"text": "1.2"}})
    _record_all(sessions, live)
    for key in live.redis.scan_iter(match=f"{live.prefix}:*"):
        live.redis.delete(key)
    Reaper(live, sessions).recover_from_ledger(ledger_complete=False)
    restored = live.get(command_id)
    assert restored is not None and restored["state"] == State.RESPONDED
    assert restored["response"] == {"text": "1.2"}
    assert live.move(command_id, State.DONE, expected=(State.RESPONDED,)).moved


def test_after_a_flush_with_the_ledger_behind_a_queued_row_ends_interrupted(stores) -> None:  # type: ignore[no-untyped-def]
    """Defect: a command finished but unrecorded was queued again after FLUSHALL and ran twice."""
    sessions, live = stores
    command_id = _accept(sessions, live)
    idempotent_id = _accept(sessions, live, idempotent=True)
    _record_all(sessions, live)
    for key in live.redis.scan_iter(match=f"{live.prefix}:*"):
        live.redis.delete(key)
    Reaper(live, sessions).recover_from_ledger(ledger_complete=False)
    assert _ledger_state(sessions, command_id) == State.INTERRUPTED
    assert live.get(command_id) is None
    restored = live.get(idempotent_id)
    assert restored is not None and restored["state"] == State.QUEUED


def test_new_commands_are_refused_before_redis_is_full(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        guard = AdmissionGuard(client, "hwq:transitions")
        guard.check()
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(int(used * 1.05)))
        with pytest.raises(StoreNearlyFull) as refused:
            AdmissionGuard(client, "hwq:transitions").check()
        assert refused.value.status == 503 and refused.value.retry_after_s > 0
        client.close()
    finally:
        server.stop()


def test_a_dispatched_idempotent_command_lost_in_a_flush_is_queued_again(stores) -> None:  # type: ignore[no-untyped-def]
    sessions, live = stores
    command_id = _accept(sessions, live, idempotent=True)
    live.claim(command_id, "dev0@host")
    _record_all(sessions, live)
    for key in live.redis.scan_iter(match=f"{live.prefix}:*"):
        live.redis.delete(key)
    Reaper(live, sessions).recover_from_ledger(ledger_complete=False)
    claim = live.claim(command_id, "dev0@host")
    assert claim.moved and claim.state == State.DISPATCHED
