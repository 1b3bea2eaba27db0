"""Presence, host sets and host records as the contract keys in a real Redis say."""

from __future__ import annotations

import json

import pytest
import redis

from config import Settings
from tasks.db import registry
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.host_store import HostStore, host_devices_key
from tasks.live_store import LiveStore
from tasks.reaper import Reaper


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    return LiveStore(redis_client, key_prefix)


def _register(live: LiveStore, name: str, host: str | None = "pi-3", active: bool = True) -> None:
    live.put_device_config(
        name, {"name": name, "address": "loop://", "host": host, "active": active}
    )


def _members(live: LiveStore, host: str) -> set[str]:
    return {m.decode() for m in live.redis.smembers(host_devices_key(live.prefix, host))}


@pytest.mark.parametrize(
    ("active", "reported", "alive", "expected"),
    [
        (False, "online", True, "inactive"),
        (True, "failed", False, "failed"),
        (True, "failed", True, "failed"),
        (True, None, False, "offline"),
        (True, "online", False, "offline"),
        (True, "port-missing", True, "port-missing"),
        (True, "online", True, "online"),
        # A worker that marks itself alive but writes no presence yet has its port open.
        (True, None, True, "online"),
    ],
)
def test_presence_follows_the_contract_keys(
    live: LiveStore, active: bool, reported: str | None, alive: bool, expected: str
) -> None:
    _register(live, "dmm", active=active)
    base = live.device_config_key("dmm")
    if reported is not None:
        live.redis.set(f"{base}:presence", reported)
    if alive:
        live.redis.set(f"{base}:alive", "1", ex=30)
    status = live.device_status("dmm")
    assert status["presence"] == expected
    assert status["online"] is (expected == "online")


def test_the_error_of_a_failed_device_is_shown(live: LiveStore) -> None:
    _register(live, "dmm")
    base = live.device_config_key("dmm")
    live.redis.set(f"{base}:presence", "failed")
    live.redis.set(f"{base}:error", "crashed 5 times in 60 s: SerialException")
    status = live.device_status("dmm")
    assert status["error"] == "crashed 5 times in 60 s: SerialException"
    _register(live, "scope")
    assert live.device_status("scope")["error"] is None


def test_the_mirror_stores_active_as_one_or_zero(live: LiveStore) -> None:
    _register(live, "dmm", active=False)
    assert live.redis.hget(live.device_config_key("dmm"), "active") == b"0"
    config = live.device_config("dmm")
    assert config is not None and config["active"] is False
    _register(live, "dmm", active=True)
    assert live.redis.hget(live.device_config_key("dmm"), "active") == b"1"


def test_a_device_moves_between_host_sets_and_leaves_when_forgotten(live: LiveStore) -> None:
    _register(live, "dmm", host="pi-3")
    _register(live, "scope", host="pi-3")
    assert _members(live, "pi-3") == {"dmm", "scope"}
    _register(live, "dmm", host="pi-4")
    assert _members(live, "pi-3") == {"scope"}
    assert _members(live, "pi-4") == {"dmm"}
    _register(live, "dmm", host=None)
    assert _members(live, "pi-4") == set()
    live.forget_device("scope")
    assert _members(live, "pi-3") == set()


def test_hosts_list_agents_and_hosts_with_devices(live: LiveStore) -> None:
    prefix = live.prefix
    # As a host agent announces itself.
    live.redis.sadd(f"{prefix}:hosts", "pi-3", "pi-9")
    live.redis.hset(
        f"{prefix}:host:pi-3",
        mapping={"name": "pi-3", "started_at": "t0", "last_seen": "2026-11-29T16:00:00Z",
                 "pid": "42", "version": "0.1"},
    )  # fmt: skip
    live.redis.expire(f"{prefix}:host:pi-3", 30)
    store = HostStore(live.redis, prefix)
    registered = {"pi-3": ["dmm"], "lab-pc": ["scope"]}
    hosts = {h["name"]: h for h in store.hosts(registered)}
    assert hosts["pi-3"] == {
        "name": "pi-3", "online": True, "last_seen": "2026-11-29T16:00:00Z", "devices": ["dmm"]
    }  # fmt: skip
    assert hosts["pi-9"]["online"] is False and hosts["pi-9"]["devices"] == []
    assert hosts["lab-pc"]["online"] is False and hosts["lab-pc"]["devices"] == ["scope"]
    assert store.announced("pi-9") and not store.announced("lab-pc")
    # The agent goes away: it is offline, its last word kept.
    live.redis.delete(f"{prefix}:host:pi-3")
    offline = {h["name"]: h for h in store.hosts(registered)}["pi-3"]
    assert offline["online"] is False and offline["last_seen"] == "2026-11-29T16:00:00Z"


def test_ports_are_read_as_the_agent_wrote_them(live: LiveStore) -> None:
    store = HostStore(live.redis, live.prefix)
    port = {"path": "/dev/ttyUSB0", "vid": "0403", "pid": "6001", "device": None}
    live.redis.set(f"{live.prefix}:host:pi-3:ports", json.dumps([port]), ex=30)
    assert store.ports("pi-3") == [port]
    live.redis.set(f"{live.prefix}:host:pi-3:ports", "not json", ex=30)
    assert store.ports("pi-3") == []
    assert store.ports("pi-4") == []


def test_the_reaper_rebuilds_host_sets_after_redis_lost_them(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url))
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessions(engine)
    live = LiveStore(client, settings.key_prefix)
    with sessions() as session, session.begin():
        for name, host in (("dmm", "pi-3"), ("scope", "pi-3"), ("psu", None)):
            values = registry.device_values(
                registry.add_device(session, {"name": name, "address": "loop://", "host": host})
            )
            live.put_device_config(name, {k: values[k] for k in registry.WORKER_FIELDS})
    # Redis loses the host set and one mirror, as after a restart without persistence.
    client.delete(host_devices_key(live.prefix, "pi-3"), live.device_config_key("scope"))
    Reaper(live, sessions).recover_from_ledger()
    assert _members(live, "pi-3") == {"dmm", "scope"}
    config = live.device_config("scope")
    assert config is not None and config["host"] == "pi-3" and config["active"] is True
    client.close()
    engine.dispose()
