"""Fixtures that run hwq as real processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from worker_host.local_stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API and server worker on SQLite, shared by a module's tests; devices are per test."""
    with running_stack(tmp_path_factory.mktemp("hwq-home"), redis_url) as stack:
        yield stack


@pytest.fixture
def device_name() -> str:
    """A device name no other test uses."""
    return f"d{uuid.uuid4().hex[:8]}"
