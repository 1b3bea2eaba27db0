"""A recorder that falls behind records at ordinary priority until it has caught up.

Defect: the recorder read and decoded every batch under SCHED_IDLE, which any busy thread
preempts: under sustained load it got a sliver of a CPU and its backlog grew without bound.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

import pytest
import redis

from config import Settings
from tasks.db import ledger
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.live_store import LiveStore
from tasks.recorder import BATCH, Recorder

from command_factory import command_values

# Longest the recorder may take to copy the backlog here, on a busy two-core machine.
DRAIN_TIMEOUT_S = 60.0

needs_sched_idle = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE"), reason="no SCHED_IDLE here: the recorder runs at one priority"
)


def _backlog(live: LiveStore, sessions: Any, count: int) -> None:
    """`count` commands accepted: one transition each waits in the stream."""
    live.put_device_config("dev0", {"name": "dev0", "address": "loop://"})
    rows = [command_values("dev0") for _ in range(count)]
    with sessions() as session, session.begin():
        for values in rows:
            ledger.insert_command(session.connection(), values)
    for values in rows:
        assert live.create(values, queue_cap=count).moved


@needs_sched_idle
def test_full_batches_are_recorded_at_ordinary_priority_until_caught_up(
    settings: Settings, redis_client: redis.Redis
) -> None:
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(redis_client, settings.key_prefix)
    _backlog(live, sessions, 3 * BATCH + BATCH // 2)
    batches: list[tuple[int, int]] = []

    def note(batch: list[dict[str, Any]]) -> None:
        # Called on the thread that took the batch: its scheduling policy says which one.
        batches.append((len(batch), os.sched_getscheduler(0)))

    stop = threading.Event()
    recorder = Recorder(live, sessions, consumer="test", on_recorded=note)
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while redis_client.xlen(live.transitions_key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert redis_client.xlen(live.transitions_key) == 0
    finally:
        stop.set()
        thread.join(10)
        engine.dispose()
    first_size, first_policy = batches[0]
    if first_policy != os.SCHED_IDLE:
        pytest.skip("this system refused SCHED_IDLE: every batch ran at ordinary priority")
    assert first_size == BATCH
    # Every batch that followed a full one ran on the thread of ordinary priority.
    after_full = [policy for (size, _), (_, policy) in itertools.pairwise(batches) if size >= BATCH]
    assert after_full and set(after_full) == {os.SCHED_OTHER}, batches
    assert sum(size for size, _ in batches) == 3 * BATCH + BATCH // 2
