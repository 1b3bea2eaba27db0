"""The reaper: ends what no worker will end, and puts back what Redis lost."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tasks.command_record import parse_iso, utc_now_iso
from tasks.db import ledger, registry
from tasks.db.models import CommandEventRow
from tasks.db.write_lock import write_session
from tasks.lifecycle import MAX_ATTEMPTS, State
from tasks.live_store import LiveStore

log = logging.getLogger("hwq.reaper")

# How often the reaper sweeps; expiry and lease deadlines are met to within this.
SWEEP_INTERVAL_S = 0.5
# A device whose queued commands have no message in the broker and nothing in flight for this
# long has lost them (a device worker died between popping a message and claiming it, or
# Redis lost the list): they are published again.
ORPHAN_AGE_S = 30.0
ORPHAN_SWEEP_EVERY = 20


class Reaper:
    """Periodic sweeps of the server worker."""

    def __init__(
        self,
        live: LiveStore,
        sessions: sessionmaker[Session],
        orphan_age_s: float = ORPHAN_AGE_S,
    ) -> None:
        self.live = live
        self.sessions = sessions
        self.orphan_age_s = orphan_age_s
        self._rounds = 0

    @property
    def epoch_key(self) -> str:
        """A key whose absence means Redis lost its data since the last sweep."""
        return f"{self.live.prefix}:epoch"

    def sweep(self) -> None:
        """One round of every check."""
        if not self.live.redis.exists(self.epoch_key):
            self.recover_from_ledger()
        self.expire_due()
        self.end_lapsed_leases()
        self._rounds += 1
        if self._rounds % ORPHAN_SWEEP_EVERY == 0:
            self.republish_orphans()

    def expire_due(self) -> None:
        """Queued commands whose expires_s passed end expired, worker or no worker."""
        for command_id in self.live.due("expiries"):
            result = self.live.move(
                command_id,
                State.EXPIRED,
                expected=(State.QUEUED,),
                detail="expired before dispatch",
            )
            if result.moved:
                log.info("command expired", extra={"command": command_id})
            else:
                self.live.redis.zrem(f"{self.live.prefix}:expiries", command_id)

    def end_lapsed_leases(self) -> None:
        """A dispatched command whose worker went silent is retried or ends interrupted."""
        for command_id in self.live.due("leases"):
            values = self.live.get(command_id)
            if values is None or values["state"] != State.DISPATCHED:
                self.live.redis.zrem(f"{self.live.prefix}:leases", command_id)
                continue
            self._settle_lost(command_id, values)

    def _settle_lost(self, command_id: str, values: dict[str, Any]) -> None:
        if values.get("idempotent") and int(values.get("attempts") or 0) < MAX_ATTEMPTS:
            result = self.live.move(
                command_id,
                State.QUEUED,
                expected=(State.DISPATCHED,),
                detail="worker vanished; queued again",
            )
            if result.moved:
                self.live.enqueue(command_id, values["device"])
                log.warning("command requeued", extra={"command": command_id})
            return
        self.live.move(
            command_id,
            State.INTERRUPTED,
            expected=(State.DISPATCHED,),
            detail="worker vanished after claiming; outcome unknown",
            fields={"error": "the device worker stopped while running this command"},
        )
        log.warning(
            "command interrupted", extra={"command": command_id, "device": values["device"]}
        )

    def republish_orphans(self) -> None:
        """Publish again the queued commands of a device whose broker queue is empty."""
        seconds, micros = self.live.redis.time()
        now = seconds + micros / 1_000_000
        pattern = f"{self.live.prefix}:dev:*:queued"
        for key in self.live.redis.scan_iter(match=pattern, count=500):
            device = key.decode()[len(self.live.prefix) + 5 : -len(":queued")]
            oldest = self.live.redis.zrange(key, 0, 0, withscores=True)
            if not oldest or now - oldest[0][1] < self.orphan_age_s:
                continue
            _, inflight, _ = self.live.device_counts(device)
            if inflight or self.live.redis.llen(self.live.broker_queue_key(device)):
                continue
            for command_id in self.live.queued_ids(device):
                self.live.enqueue(command_id, device)
            log.warning("queued commands published again", extra={"device": device})

    def recover_from_ledger(self) -> None:
        """Redis lost its data: rebuild device mirrors, requeue queued, end dispatched."""
        with write_session(self.sessions) as session:
            for device_row in registry.list_devices(session):
                values = registry.device_values(device_row)
                if self.live.device_config(values["name"]) is None:
                    self.live.put_device_config(
                        values["name"], {k: values[k] for k in registry.WORKER_FIELDS}
                    )
            for row in ledger.unfinished(session):
                if self.live.state_of(row.id) is not None:
                    continue
                if row.state == State.QUEUED:
                    values = ledger.command_view(row)
                    values["seq"] = row.last_seq
                    self.live.create(values, queue_cap=1 << 30)
                    self.live.enqueue(row.id, row.device)
                    log.warning("command restored from ledger", extra={"command": row.id})
                elif row.state == State.DISPATCHED:
                    self._interrupt_in_ledger(session, row)
        self.live.redis.set(self.epoch_key, utc_now_iso())

    def _interrupt_in_ledger(self, session: Session, row: Any) -> None:
        now = utc_now_iso()
        row.last_seq += 1
        session.add(
            CommandEventRow(
                command_id=row.id,
                seq=row.last_seq,
                state=State.INTERRUPTED,
                at=parse_iso(now),
                detail="live state lost while the command was dispatched; outcome unknown",
            )
        )
        row.state = State.INTERRUPTED
        row.error = "live state was lost while the command was in flight"
        row.finished_at = parse_iso(now)
        log.warning("command interrupted after data loss", extra={"command": row.id})

    def run(self, stop: threading.Event) -> None:
        """Sweep until `stop` is set; store outages are waited out."""
        while not stop.is_set():
            try:
                self.sweep()
            except (redis.RedisError, SQLAlchemyError) as e:
                log.warning("reaper waiting for its stores", extra={"error": str(e)})
            stop.wait(SWEEP_INTERVAL_S)
