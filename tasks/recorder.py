"""The recorder: copies every transition from Redis into the SQL ledger, in order, once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tasks.command_metrics import count_outcomes, terminal_entries
from tasks.command_record import from_redis_fields
from tasks.db import ledger
from tasks.db.engine import checkpoint_passively
from tasks.db.write_lock import write_session
from tasks.errors import WriterBusy
from tasks.idle_priority import yield_to_everything_else
from tasks.lifecycle import TERMINAL
from tasks.live_store import LiveStore
from tasks.recently_accepted import RECENT_S
from tasks.redis_replies import Fields, entries_of_one_stream, text_fields

log = logging.getLogger("hwq.recorder")

GROUP = "recorder"
# Entries taken per round; one SQL transaction covers them all.
BATCH = 200
# Entries taken per round while catching up: fewer, larger transactions copy a backlog with
# less work per entry, at the cost of holding the writer lock longer while the load lasts.
CATCH_UP_BATCH = 5 * BATCH
# How long the recorder waits for more transitions after the first one of a batch arrives.
# Longer gathers make fewer commits, but each holds SQLite's single writer lock longer, and
# a submission arriving meanwhile waits that long, and those waits make the tail of POST
# latency (bench/README.md gives the figures for this value and a longer one).
GATHER_S = 0.02
# How long a finished command's live state stays in Redis once it is in the ledger: long
# enough that a client who just submitted it can still wait on its wake stream.
RECORDED_TTL_S = int(2 * RECENT_S)
# How long one read blocks before the loop looks at its stop flag again.
BLOCK_MS = 1000
# How often, at most, the recorder copies SQLite's write-ahead log into the database. Doing
# it here, beside the writers rather than inside one of their commits, keeps the copy and
# its disk syncs out of the API's submissions.
CHECKPOINT_EVERY_S = 1.0


class Recorder:
    """Reads the transitions stream as a consumer group, so a crash replays unacked entries."""

    def __init__(
        self,
        live: LiveStore,
        sessions: sessionmaker[Session],
        consumer: str,
        on_recorded: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.live = live
        self.sessions = sessions
        self.consumer = consumer
        # Told of each batch once it is in SQL, e.g. to show outcomes in Flower.
        self.on_recorded = on_recorded
        self._group_ready = False
        self._checkpointed_at = time.monotonic()
        # Where the SQL transactions run while `run` loops: a thread of ordinary priority.
        self._writer: ThreadPoolExecutor | None = None

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.live.redis.xgroup_create(self.live.transitions_key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    def record_once(self, block_ms: int = BLOCK_MS, on_writer: bool = False) -> int:
        """Copy one batch; returns how many entries were recorded.

        `on_writer`: the caller is the writer's own thread, which writes the batch itself.
        """
        self._ensure_group()
        key = self.live.transitions_key
        batch = CATCH_UP_BATCH if on_writer else BATCH
        # Entries this consumer read but did not acknowledge before a crash come first.
        replies = self.live.redis.xreadgroup(GROUP, self.consumer, {key: "0"}, count=batch)
        entries = entries_of_one_stream(replies)
        if not entries:
            replies = self.live.redis.xreadgroup(
                GROUP, self.consumer, {key: ">"}, count=batch, block=block_ms
            )
            entries = entries_of_one_stream(replies)
        if not entries:
            return 0
        if len(entries) < batch and block_ms:
            # A command makes several transitions within milliseconds; gathering them for a
            # moment turns many small SQL transactions into one.
            time.sleep(GATHER_S)
            more = self.live.redis.xreadgroup(
                GROUP, self.consumer, {key: ">"}, count=batch - len(entries)
            )
            entries += entries_of_one_stream(more)
        decoded = [_decode(fields) for _, fields in entries]
        if self._writer is None or on_writer:
            self._write(decoded)
        else:
            self._writer.submit(self._write, decoded).result()
        if self.on_recorded is not None:
            self.on_recorded(decoded)
        ids = [entry_id for entry_id, _ in entries]
        terminal = terminal_entries(decoded)
        submitted = self._created_at(terminal)
        pipe = self.live.redis.pipeline()
        pipe.xack(key, GROUP, *ids)
        # Counted in the MULTI that acknowledges the batch: each ending counts once.
        count_outcomes(pipe, self.live.prefix, terminal, submitted)
        pipe.xdel(key, *ids)
        # A finished command is in the ledger now, where reads find it once Redis lets go.
        for command_id in {e["id"] for e in decoded if e["state"] in TERMINAL}:
            for live_key in (
                self.live.command_key(command_id),
                self.live.log_key(command_id),
                self.live.wake_key(command_id),
            ):
                pipe.expire(live_key, RECORDED_TTL_S)
        pipe.execute()
        self._checkpoint_when_due()
        return len(entries)

    def _created_at(self, terminal: list[dict[str, Any]]) -> dict[str, str | None]:
        """When each command that ended was submitted, from its live state."""
        if not terminal:
            return {}
        ids = sorted({entry["id"] for entry in terminal})
        pipe = self.live.redis.pipeline(transaction=False)
        for command_id in ids:
            pipe.hget(self.live.command_key(command_id), "created_at")
        return {i: v.decode() if v else None for i, v in zip(ids, pipe.execute(), strict=True)}

    def _write(self, decoded: list[dict[str, Any]]) -> None:
        with write_session(self.sessions) as session:
            ledger.record_transitions(session, decoded)

    def _checkpoint_when_due(self) -> None:
        now = time.monotonic()
        if now - self._checkpointed_at < CHECKPOINT_EVERY_S:
            return
        self._checkpointed_at = now
        try:
            with self.sessions() as session:
                checkpoint_passively(session.get_bind().engine)
        except SQLAlchemyError as e:  # the log grows until the next try; recording goes on
            log.warning("write-ahead log not checkpointed", extra={"error": str(e)})

    def run(self, stop: threading.Event) -> None:
        """Record until `stop` is set; outages of Redis or SQL are waited out, not fatal.

        Reading and decoding yield the CPU to any command's work (SCHED_IDLE) while the
        recorder keeps up, so a batch runs in the gaps between commands. Under sustained
        load those gaps close and an idle thread falls behind without bound; so a full
        batch, which says more are waiting, hands the whole work to the writer's thread, of
        ordinary priority, until a batch comes back short. The SQL transaction always runs
        there: a recorder starved of CPU must never sit on SQLite's writer lock while a
        submission waits for it.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwq-ledger") as writer:
            # The writer's thread is made now, before this one lowers its priority, which
            # threads inherit from the thread that starts them.
            writer.submit(time.monotonic).result()
            self._writer = writer
            yield_to_everything_else()
            behind = False
            try:
                while not stop.is_set():
                    try:
                        if behind:
                            recorded = writer.submit(self.record_once, BLOCK_MS, True).result()
                        else:
                            recorded = self.record_once()
                        behind = recorded >= BATCH
                    except (redis.RedisError, SQLAlchemyError, WriterBusy) as e:
                        self._group_ready = False
                        log.warning("recorder waiting for its stores", extra={"error": str(e)})
                        stop.wait(1.0)
            finally:
                self._writer = None


def _decode(fields: Fields) -> dict[str, Any]:
    raw = text_fields(fields)
    values = from_redis_fields(raw)
    values["seq"] = int(raw["seq"])
    return values
