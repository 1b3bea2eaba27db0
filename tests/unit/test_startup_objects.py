"""Startup objects leave the garbage collector's walk once a process is ready."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from celery import signals

from hwq.startup_objects import freeze_startup_objects, freeze_when_worker_ready


@pytest.fixture
def thawed() -> Iterator[None]:
    """Start and end with nothing frozen, so the test process collects as before."""
    gc.unfreeze()
    receivers = list(signals.worker_ready.receivers or [])
    yield
    gc.unfreeze()
    signals.worker_ready.receivers = receivers


def test_freezing_takes_every_live_object_out_of_collection(thawed: None) -> None:
    kept = [[] for _ in range(1000)]  # objects the collector tracks, alive through the freeze
    freeze_startup_objects()
    assert gc.get_freeze_count() >= len(kept)
    # A collection walks gc.get_objects(): none of them is there any more.
    walked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in walked for o in kept)


def test_a_worker_freezes_once_it_is_ready(thawed: None) -> None:
    freeze_when_worker_ready()
    assert gc.get_freeze_count() == 0
    signals.worker_ready.send(sender=None)
    assert gc.get_freeze_count() > 0
