"""The API process's token cache: bounded in size and time, and dropped on any revocation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from config import Settings
from tasks import token_access as service_module
from tasks.db import tokens
from tasks.db.engine import make_engine, migrate
from tasks.errors import Unauthorized
from tasks.service import HwqService

# Short enough for a quick test; the logic is the one the minute-long default goes through.
TTL_S = 0.5


@pytest.fixture
def service(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[HwqService]:
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    engine.dispose()
    monkeypatch.setattr(service_module, "TOKEN_CACHE_TTL_S", TTL_S)
    monkeypatch.setattr(service_module, "TOKEN_CACHE_SIZE", 2)
    service = HwqService(settings)
    yield service
    service.engine.dispose()


def _token_id(service: HwqService, name: str) -> int:
    return next(int(row["id"]) for row in service.list_tokens() if row["name"] == name)


def _delete_behind_the_cache(service: HwqService, name: str) -> None:
    """Delete a token's row without a revocation: only the cache still knows the token."""
    token_id = _token_id(service, name)
    with service.sessions() as session, session.begin():
        assert tokens.delete_token(session, token_id)


def test_a_cached_token_is_looked_up_again_once_its_time_is_up(service: HwqService) -> None:
    token = service.create_token("viewer", "alice")
    assert service.authenticate(token).name == "alice"
    _delete_behind_the_cache(service, "alice")
    assert service.authenticate(token).name == "alice"
    time.sleep(TTL_S * 2)
    with pytest.raises(Unauthorized):
        service.authenticate(token)


def test_a_revoked_token_is_refused_at_once(service: HwqService) -> None:
    token = service.create_token("viewer", "bob")
    assert service.authenticate(token).name == "bob"
    generation = service.redis.get(service.token_generation_key)
    assert service.cached_principal(token, generation) is not None
    service.revoke_token(_token_id(service, "bob"), by="admin")
    with pytest.raises(Unauthorized):
        service.authenticate(token)
    generation = service.redis.get(service.token_generation_key)
    assert service.cached_principal(token, generation) is None


def test_the_cache_holds_at_most_its_size_the_least_recently_used_dropped(
    service: HwqService,
) -> None:
    names = ["carol", "dave", "erin"]
    issued = {name: service.create_token("viewer", name) for name in names}
    for name in names:
        service.authenticate(issued[name])
    for name in names:
        _delete_behind_the_cache(service, name)
    with pytest.raises(Unauthorized):
        service.authenticate(issued["carol"])
    assert [service.authenticate(issued[name]).name for name in ("dave", "erin")] == [
        "dave",
        "erin",
    ]
