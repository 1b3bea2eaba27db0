"""A polling device's claims on real Redis: blocking and asyncio alike, inert deliveries
skipped, a command whose client left put back at the front of its queue."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.poll_claims import PollClaims, is_poll_claim

from command_factory import submitted


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    store = LiveStore(redis_client, key_prefix)
    for device in ("board", "other"):
        store.put_device_config(device, {"name": device, "transport": "http-poll"})
    return store


def test_a_poll_takes_commands_in_order_and_skips_inert_deliveries(live: LiveStore) -> None:
    cancelled = submitted(live, "board", "first")
    live.move(cancelled, State.CANCELLED, expected=(State.QUEUED,), fields={"cancel": True})
    kept = submitted(live, "board", "second")
    live.enqueue(kept, "board")  # a duplicate delivery of the same command
    later = submitted(live, "board", "third")
    claims = PollClaims(live, "board")

    taken = claims.take_now()
    assert taken is not None and taken["id"] == kept
    assert is_poll_claim(taken)
    assert live.state_of(kept) == State.DISPATCHED
    second = claims.take_now()
    assert second is not None and second["id"] == later
    assert claims.take_now() is None
    assert live.redis.exists(f"{live.device_config_key('board')}:alive")


def test_another_devices_message_is_sent_home_untouched(live: LiveStore) -> None:
    theirs = submitted(live, "other", "theirs")
    live.enqueue(theirs, "board")  # published to the wrong queue
    live.redis.delete(live.broker_queue_key("other"))

    assert PollClaims(live, "board").take_now() is None
    assert live.state_of(theirs) == State.QUEUED
    taken = PollClaims(live, "other").take_now()
    assert taken is not None and taken["id"] == theirs


def test_a_command_put_back_is_next_again(live: LiveStore) -> None:
    first = submitted(live, "board", "first")
    second = submitted(live, "board", "second")
    claims = PollClaims(live, "board")
    taken = claims.take_now()
    assert taken is not None and taken["id"] == first

    assert claims.put_back(first)
    assert live.state_of(first) == State.QUEUED
    again = claims.take_now()
    assert again is not None and again["id"] == first
    assert not claims.put_back(second)  # not dispatched: nothing to put back


def test_an_asyncio_poll_waits_for_a_command(live: LiveStore, redis_url: str) -> None:
    async def scenario() -> tuple[object, object]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            claims = PollClaims(live, "board")
            nothing = await claims.take_async(client, 0.3, longest_block_s=0.1)
            waiting = asyncio.ensure_future(claims.take_async(client, 10, longest_block_s=0.2))
            await asyncio.sleep(0.5)
            command_id = await asyncio.to_thread(submitted, live, "board", "late")
            values = await asyncio.wait_for(waiting, 10)
            assert claims.claimed is not None and claims.claimed["id"] == command_id
            return nothing, values["id"] == command_id
        finally:
            await client.aclose()

    nothing, found = asyncio.run(scenario())
    assert nothing is None
    assert found is True
