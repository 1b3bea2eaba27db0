"""The shared SSE feed's rules that keep an observer joining mid-stream exact, and its pace."""

from __future__ import annotations

from api.stream_feed import (
    MAX_BATCH_INTERVAL_S,
    Batch,
    batch_interval_s,
    entry_order,
)


def test_stream_ids_order_as_redis_orders_them() -> None:
    ids = ["1700000000000-10", "1700000000000-9", "1700000000001-0", "999999999999-5"]
    assert sorted(ids, key=entry_order) == [
        "999999999999-5", "1700000000000-9", "1700000000000-10", "1700000000001-0",
    ]  # fmt: skip


def test_a_batch_gives_an_observer_only_what_it_has_not_sent() -> None:
    entries = [(entry_order(i), f"<{i}>".encode()) for i in ("5-0", "5-1", "6-0")]
    batch = Batch(entries, "6-0")
    assert batch.after(entry_order("4-9")) == b"<5-0><5-1><6-0>"
    assert batch.after(entry_order("5-0")) == b"<5-1><6-0>"
    assert batch.after(entry_order("6-0")) == b""


def test_the_pace_bounds_sends_and_never_holds_entries_long() -> None:
    assert batch_interval_s(1) < 0.001
    assert batch_interval_s(10) == 10 / 2000
    assert batch_interval_s(500) == MAX_BATCH_INTERVAL_S
    assert batch_interval_s(100_000) == MAX_BATCH_INTERVAL_S
