"""What a host agent wants to serve, read from Redis as the registry mirrors it, and the
`hwq.host_sync` message that makes it look again at once."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from config import Settings
from tasks.celery_app import create_celery
from tasks.live_store import LiveStore
from tasks.queues import host_queue
from worker_host.host_agent import HostAgent
from worker_host.worker_child import SubprocessStarter


def _agent(redis_url: str, key_prefix: str, tmp_path: Path) -> HostAgent:
    settings = Settings(home=tmp_path, redis_url=redis_url, key_prefix=key_prefix,
                        hostname="bench1")  # fmt: skip
    return HostAgent(settings, SubprocessStarter())


def test_wanted_devices_are_this_hosts_active_serial_ones(
    redis_url: str, redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    live = LiveStore(redis_client, key_prefix)
    base = {"transport": "serial", "address": "loop://", "host": "bench1"}
    live.put_device_config("on", {"name": "on", **base})
    live.put_device_config("off", {"name": "off", **base, "active": "0"})
    live.put_device_config("polled", {"name": "polled", **base, "transport": "http-poll"})
    live.put_device_config("elsewhere", {"name": "elsewhere", **base, "host": "bench2"})
    live.put_device_config("moved", {"name": "moved", **base})
    live.put_device_config("moved", {"name": "moved", **base, "host": "bench2"})
    agent = _agent(redis_url, key_prefix, tmp_path)
    assert sorted(agent._read_wanted()) == ["on"]
    assert redis_client.smembers(live.host_devices_key("bench2")) == {b"elsewhere", b"moved"}

    before = agent._read_wanted()["on"].digest
    live.put_device_config("on", {"name": "on", **base, "baudrate": 9600})
    assert agent._read_wanted()["on"].digest != before
    live.forget_device("on")
    assert agent._read_wanted() == {}
    assert redis_client.smembers(live.host_devices_key("bench1")) == {b"off", b"polled"}


def test_a_sync_message_wakes_the_agent(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    agent = _agent(redis_url, key_prefix, tmp_path)
    consumer = threading.Thread(target=agent._consume_control, daemon=True)
    consumer.start()
    app = create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))
    try:
        app.send_task("hwq.host_sync", kwargs={"device": "on"}, queue=host_queue("bench1"))
        assert agent.wake.wait(10)
    finally:
        agent.stop()
        agent.control.interrupt()
        consumer.join(15)
        app.close()
    assert not consumer.is_alive()
