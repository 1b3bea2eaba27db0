"""Shared fixtures: a real Redis server of the tests' own, settings, and both databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.local_stack import Stack, running_stack
from config import Settings
from hwq.embedded_redis import EmbeddedRedis

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The PostgreSQL server the database tests use; each run makes and drops its own database.
POSTGRES_ADMIN_URL = os.environ.get(
    "HWQ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# Tiers marked by folder, so `-m "not e2e"` gives the fast loop.
_FOLDER_MARKS = {"e2e": ("e2e",), "faults": ("faults", "e2e")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its tier folder (e2e/ and faults/ run real hwq processes), and mark
    `postgres` the ones that run on PostgreSQL, so `-m "not postgres"` leaves them out."""
    for item in items:
        parts = item.path.parts
        tier = parts[parts.index("tests") + 1] if "tests" in parts else ""
        for mark in _FOLDER_MARKS.get(tier, ()):
            item.add_marker(getattr(pytest.mark, mark))
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)


def unavailable(reason: str) -> None:
    """Skip on a laptop without the service; fail in CI, where every service must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests that need a service must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server started for this test session alone, gone after it."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    try:
        url = server.start()
    except Exception as e:  # no binary, or it would not start
        unavailable(f"cannot start redis-server: {e}")
    yield url
    server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the tests' Redis; the test's keys are removed after it."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"hwqtest-{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


def _postgres_database() -> Iterator[str]:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    name = f"hwq_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:
        admin.dispose()
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {e}")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hwq.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(redis_url: str, key_prefix: str, database_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at the tests' Redis, a fresh database and a temporary home."""
    return Settings(
        home=tmp_path / "home",
        redis_url=redis_url,
        database_url=database_url,
        key_prefix=key_prefix,
        api_threads=8,
    )


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API and server worker on SQLite, shared by a module's tests; devices are per test."""
    with running_stack(tmp_path_factory.mktemp("hwq-home"), redis_url) as stack:
        yield stack


@pytest.fixture
def device_name() -> str:
    """A device name no other test uses."""
    return f"d{uuid.uuid4().hex[:8]}"
