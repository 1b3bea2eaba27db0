"""The claim carries the claiming worker's device: another device's command is refused, inert."""

from __future__ import annotations

import pytest
import redis

from tasks.lifecycle import State
from tasks.live_store import LiveStore

from command_factory import command_values


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    return LiveStore(redis_client, key_prefix)


def _queued(live: LiveStore, device: str) -> str:
    values = command_values(device)
    live.put_device_config(device, {"name": device, "address": "loop://"})
    assert live.create(values, queue_cap=100).moved
    return str(values["id"])


def test_a_claim_for_another_device_is_refused_and_changes_nothing(live: LiveStore) -> None:
    command_id = _queued(live, "dev1")

    refused = live.claim(command_id, "dev0@host", "dev0")

    assert not refused.moved and refused.other_device == "dev1"
    assert refused.state == State.QUEUED and refused.values is None
    assert live.state_of(command_id) == State.QUEUED
    assert [e["state"] for e in live.events(command_id)] == ["queued"]
    assert live.device_counts("dev1") == (1, 0, 0)


def test_the_commands_own_device_claims_it(live: LiveStore) -> None:
    command_id = _queued(live, "dev1")

    claimed = live.claim(command_id, "dev1@host", "dev1")

    assert claimed.moved and claimed.state == State.DISPATCHED and claimed.other_device is None
    assert claimed.values is not None and claimed.values["device"] == "dev1"


def test_an_expired_claim_says_why_in_the_event_log(live: LiveStore) -> None:
    command_id = _queued(live, "dev1")
    live.redis.hset(live.command_key(command_id), "expires_at", 1)

    ended = live.claim(command_id, "dev1@host", "dev1")

    assert ended.state == State.EXPIRED
    assert live.events(command_id)[-1]["detail"] == "expired before dispatch"
