"""The reaper: ends what no worker will end, and puts back what Redis lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tasks.analysis import MANUAL
from tasks.command_record import parse_iso, utc_now_iso
from tasks.command_values import CommandValues
from tasks.db import ledger, registry
from tasks.db.models import CommandEventRow
from tasks.db.write_lock import write_session
from tasks.errors import WriterBusy
from tasks.host_store import host_devices_key
from tasks.lifecycle import MAX_ATTEMPTS, TERMINAL, State
from tasks.live_store import LiveStore
from tasks.poll_claims import POLL_TIMEOUT_DETAIL, is_poll_claim
from tasks.redis_replies import stream_millis

log = logging.getLogger("hwq.reaper")

# The queue cap of a command put back from the ledger: it was accepted long ago.
UNCAPPED = 1 << 30

# How often the reaper sweeps; expiry and lease deadlines are met to within this.
SWEEP_INTERVAL_S = 0.5
# A device whose queued commands have no message in the broker and nothing in flight for this
# long has lost them (a device worker died between popping a message and claiming it, or
# Redis lost the list): they are published again.
ORPHAN_AGE_S = 30.0
ORPHAN_SWEEP_EVERY = 20
# Every this many rounds the ledger's unfinished rows are held against Redis, which may have
# lost some of them without losing `epoch` (a replica that lagged, the last second of an
# append-only file after a power cut, keys deleted by hand).
RECONCILE_EVERY = 10
# A row younger than this may be a submission between its ledger insert and its create.
RECONCILE_GRACE_S = 30.0
# When Redis loses everything, the ledger counts as complete (every transition recorded, so a
# row it shows queued never reached a device) only if the recorder was seen with nothing
# left to record this recently.
DRAINED_RECENTLY_S = 2.0


class Reaper:
    """Periodic sweeps of the server worker."""

    def __init__(
        self,
        live: LiveStore,
        sessions: sessionmaker[Session],
        orphan_age_s: float = ORPHAN_AGE_S,
        reconcile_grace_s: float = RECONCILE_GRACE_S,
        on_restored_reply: Callable[[str], None] | None = None,
    ) -> None:
        self.live = live
        self.sessions = sessions
        self.orphan_age_s = orphan_age_s
        self.reconcile_grace_s = reconcile_grace_s
        # Called with a command restored as responded whose registered analyzer must run.
        self.on_restored_reply = on_restored_reply
        self._rounds = 0
        # When (monotonic) the transitions stream was last seen empty with `epoch` present.
        self._drained_at: float | None = None
        # Redis's run id: a new one means it restarted, and may have lost its last writes.
        self._run_id: str | None = None
        # Unfinished ledger rows seen without live state, with the Redis time first seen so.
        self._missing_since: dict[str, float] = {}

    @property
    def epoch_key(self) -> str:
        """A key whose absence means Redis lost its data since the last sweep."""
        return f"{self.live.prefix}:epoch"

    def sweep(self) -> None:
        """One round of every check."""
        pipe = self.live.redis.pipeline()
        pipe.exists(self.epoch_key)
        pipe.xlen(self.live.transitions_key)
        epoch, backlog = pipe.execute()
        restarted = self._redis_restarted()
        if not epoch or restarted:
            self.recover_from_ledger(ledger_complete=self._drained_recently() and not restarted)
        elif not backlog:
            self._drained_at = time.monotonic()
        self.expire_due()
        self.end_lapsed_leases()
        self._rounds += 1
        if self._rounds % ORPHAN_SWEEP_EVERY == 0:
            self.republish_orphans()
        if self._rounds % RECONCILE_EVERY == 0:
            self.reconcile()

    def _redis_restarted(self) -> bool:
        run_id = str(self.live.redis.info("server").get("run_id", ""))
        restarted = self._run_id is not None and run_id != self._run_id
        self._run_id = run_id
        return restarted

    def _drained_recently(self) -> bool:
        return (
            self._drained_at is not None
            and time.monotonic() - self._drained_at <= DRAINED_RECENTLY_S
        )

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
            if is_poll_claim(values):
                self._end_unanswered_poll(command_id, values)
                continue
            self._settle_lost(command_id, values)

    def _end_unanswered_poll(self, command_id: str, values: CommandValues) -> None:
        """A polling device collected the command and sent no reply within its timeout_s."""
        result = self.live.move(
            command_id,
            State.TIMED_OUT,
            expected=(State.DISPATCHED,),
            detail=POLL_TIMEOUT_DETAIL,
            fields={"error": f"no reply within {values.get('timeout_s')} s"},
        )
        if result.moved:
            log.info("command timed out", extra={"command": command_id,
                                                 "device": values["device"]})  # fmt: skip

    def _settle_lost(self, command_id: str, values: CommandValues) -> None:
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
            if not oldest or now - float(oldest[0][1]) < self.orphan_age_s:
                continue
            _, inflight, _ = self.live.device_counts(device)
            if inflight or self.live.redis.llen(self.live.broker_queue_key(device)):
                continue
            for command_id in self.live.queued_ids(device):
                self.live.enqueue(command_id, device)
            log.warning("queued commands published again", extra={"device": device})

    def recover_from_ledger(self, ledger_complete: bool = False) -> None:
        """Redis lost its data: rebuild device mirrors, then settle every unfinished row.

        `ledger_complete`: the recorder had nothing left to record just before the loss, so
        a row the ledger shows queued was never dispatched. Otherwise it may have been, in
        a transition the loss took before the recorder copied it.
        """
        with write_session(self.sessions) as session:
            self._mirror_devices(session)
            rows = ledger.unfinished(session)
            present = self._present(rows)
            for row, live in zip(rows, present, strict=True):
                if not live:
                    self._settle_from_ledger(session, row, ledger_complete)
        self._missing_since.clear()
        self.live.redis.set(self.epoch_key, utc_now_iso())
        log.warning("live state rebuilt from the ledger", extra={"complete": ledger_complete})

    def reconcile(self) -> None:
        """Settle unfinished ledger rows whose live state is gone though `epoch` is not.

        A row counts as lost once it has been missing from Redis since before the oldest
        transition still waiting for the recorder: by then the ledger holds every transition
        it ever had, so a row it shows queued was never dispatched.
        """
        with self.sessions() as session:
            rows = ledger.unfinished(session)
        present = self._present(rows)
        now = self._redis_now()
        recorded_through = self._recorded_through(now)
        ages = {row.id: now - _utc(row.created_at).timestamp() for row in rows}
        missing = {
            row.id
            for row, live in zip(rows, present, strict=True)
            if not live and ages[row.id] >= self.reconcile_grace_s
        }
        self._missing_since = {i: self._missing_since.get(i, now) for i in missing}
        due = {i for i, since in self._missing_since.items() if since < recorded_through}
        if not due:
            return
        with write_session(self.sessions) as session:
            self._mirror_devices(session)
            for command_id in due:
                row = ledger.get_command(session, command_id)
                if row is None or row.state in TERMINAL or self.live.state_of(command_id):
                    continue
                self._settle_from_ledger(session, row, ledger_complete=True)
                self._missing_since.pop(command_id, None)

    def _mirror_devices(self, session: Session) -> None:
        """Put back the settings mirror of every registered device that lost it, and each
        device in its host's set, which its host agent serves it from."""
        for device_row in registry.list_devices(session):
            values = registry.device_values(device_row)
            if self.live.device_config(values["name"]) is None:
                self.live.put_device_config(
                    values["name"], {k: values[k] for k in registry.WORKER_FIELDS}
                )
            elif values["host"]:
                self.live.redis.sadd(
                    host_devices_key(self.live.prefix, values["host"]), values["name"]
                )

    def _present(self, rows: list[Any]) -> list[bool]:
        pipe = self.live.redis.pipeline(transaction=False)
        for row in rows:
            pipe.exists(self.live.command_key(row.id))
        return [bool(found) for found in pipe.execute()]

    def _redis_now(self) -> float:
        seconds, micros = self.live.redis.time()
        return float(seconds + micros / 1_000_000)

    def _recorded_through(self, now: float) -> float:
        """The Redis time before which every transition is in the ledger."""
        oldest = self.live.redis.xrange(self.live.transitions_key, count=1)
        if not oldest or oldest[0][0] is None:
            return now
        return stream_millis(oldest[0][0]) / 1000

    def _settle_from_ledger(self, session: Session, row: Any, ledger_complete: bool) -> None:
        """One unfinished row whose live state is gone: back into Redis, or ended."""
        values = ledger.command_view(row)
        # The state it comes back in is the create's to set, not the ledger's.
        del values["state"]
        values["seq"] = row.last_seq
        context = {"command": row.id, "device": row.device}
        if row.state == State.RESPONDED:
            self.live.create(
                values, UNCAPPED, restore_as=State.RESPONDED, detail="restored from the ledger"
            )
            log.warning("reply restored from ledger", extra=context)
            analyzer = (row.analysis or {}).get("analyzer")
            if analyzer not in (None, MANUAL) and self.on_restored_reply is not None:
                self.on_restored_reply(row.id)
            return
        retry = row.idempotent and row.attempts < MAX_ATTEMPTS
        if (row.state == State.QUEUED and (ledger_complete or row.idempotent)) or (
            row.state == State.DISPATCHED and retry
        ):
            # The device worker refuses to send a restored command it sent already.
            values["restored"] = True
            self.live.create(
                values,
                UNCAPPED,
                enqueue=self.live.execute_message(row.id, row.device),
                detail="restored from the ledger",
            )
            log.warning("command restored from ledger", extra=context)
            return
        self._interrupt_in_ledger(session, row)

    def _interrupt_in_ledger(self, session: Session, row: Any) -> None:
        now = utc_now_iso()
        if row.state == State.DISPATCHED:
            detail = "live state lost while the command was dispatched; outcome unknown"
            error = "live state was lost while the command was in flight"
        else:
            # The ledger trailed Redis when it lost its data: a dispatch may have been lost
            # with it, so the command may have reached the device and is not sent again.
            detail = "live state lost before the ledger caught up; it may have run"
            error = "live state was lost before the ledger knew whether it was sent"
        row.last_seq += 1
        session.add(
            CommandEventRow(
                command_id=row.id,
                seq=row.last_seq,
                state=State.INTERRUPTED,
                at=parse_iso(now),
                detail=detail,
            )
        )
        row.state = State.INTERRUPTED
        row.error = error
        row.finished_at = parse_iso(now)
        log.warning("command interrupted after data loss", extra={"command": row.id})

    def run(self, stop: threading.Event) -> None:
        """Sweep until `stop` is set; store outages are waited out."""
        while not stop.is_set():
            try:
                self.sweep()
            except (redis.RedisError, SQLAlchemyError, WriterBusy) as e:
                log.warning("reaper waiting for its stores", extra={"error": str(e)})
            stop.wait(SWEEP_INTERVAL_S)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back the stored UTC time without its zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
