"""Claims sent ahead when a message arrives and read when its command starts, on a real Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from tasks.lifecycle import State
from tasks.live_store import LiveStore
from worker_host.early_claim import EarlyClaims

from command_factory import command_values, wait_until_dispatched

WORKER = "dev0@host"


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    return LiveStore(redis_client, key_prefix)


@pytest.fixture
def claims(live: LiveStore) -> Iterator[EarlyClaims]:
    early = EarlyClaims(live, WORKER)
    yield early
    early.close()


def _queued(live: LiveStore, **extra: object) -> str:
    values = command_values("dev0", **extra)
    live.put_device_config("dev0", {"name": "dev0", "address": "loop://"})
    assert live.create(values, queue_cap=100).moved
    return str(values["id"])


def test_a_claim_sent_ahead_is_won_when_the_command_starts(
    live: LiveStore, claims: EarlyClaims
) -> None:
    command_id = _queued(live, payload="ECHO early")
    before = time.monotonic()
    claims.send(command_id)
    # The claim runs in Redis while the command's thread is still on its way.
    wait_until_dispatched(live, command_id)
    result, claimed_at = claims.claim(command_id)
    assert result.moved and result.state == State.DISPATCHED
    assert result.values is not None and result.values["payload"] == "ECHO early"
    assert before <= claimed_at <= time.monotonic()
    assert live.get(command_id)["claimed_by"] == WORKER  # type: ignore[index]


def test_a_command_whose_claim_was_not_sent_is_claimed_then(
    live: LiveStore, claims: EarlyClaims
) -> None:
    command_id = _queued(live)
    result, _ = claims.claim(command_id)
    assert result.moved and result.state == State.DISPATCHED


def test_a_cancelled_command_loses_its_early_claim(live: LiveStore, claims: EarlyClaims) -> None:
    command_id = _queued(live)
    assert live.move(command_id, State.CANCELLED).moved
    claims.send(command_id)
    result, _ = claims.claim(command_id)
    assert not result.moved and result.state == State.CANCELLED


def test_an_unread_claim_of_a_command_that_never_started_is_skipped(
    live: LiveStore, claims: EarlyClaims, caplog: pytest.LogCaptureFixture
) -> None:
    never_started, started = _queued(live), _queued(live)
    claims.send(never_started)
    claims.send(started)
    with caplog.at_level(logging.WARNING, logger="hwq.device"):
        result, _ = claims.claim(started)
    assert result.moved and result.values is not None and result.values["id"] == started
    # The other one won its claim too; its lease will settle it, and the log says so.
    assert live.state_of(never_started) == State.DISPATCHED
    assert any(
        getattr(record, "command", None) == never_started for record in caplog.records
    )


def test_a_claim_redis_could_not_run_is_made_again(
    live: LiveStore, claims: EarlyClaims, redis_client: redis.Redis
) -> None:
    command_id = _queued(live)
    redis_client.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
    claims.send(command_id)
    result, _ = claims.claim(command_id)
    assert result.moved and result.state == State.DISPATCHED


def test_a_lost_connection_falls_back_to_an_ordinary_claim(
    live: LiveStore, claims: EarlyClaims, redis_client: redis.Redis
) -> None:
    first = _queued(live)
    claims.send(first)
    assert claims.claim(first)[0].moved
    # Redis drops every other connection, the early-claim one among them.
    redis_client.client_kill_filter(_type="normal", skipme=True)
    second = _queued(live)
    claims.send(second)
    result, _ = claims.claim(second)
    assert result.moved and result.state == State.DISPATCHED
    # And the next command goes ahead on a new connection.
    third = _queued(live)
    claims.send(third)
    assert claims.claim(third)[0].moved
