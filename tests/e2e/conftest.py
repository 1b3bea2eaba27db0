"""Fixtures that run hwq as real processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker_host.local_stack import Stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API and server worker on SQLite, shared by a module's tests; devices are per test."""
    home: Path = tmp_path_factory.mktemp("hwq-home")
    running = Stack(home=home, redis_url=redis_url, key_prefix=f"e2e-{uuid.uuid4().hex[:6]}")
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture
def device_name() -> str:
    """A device name no other test uses."""
    return f"d{uuid.uuid4().hex[:8]}"
