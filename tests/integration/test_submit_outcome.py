"""A submission whose create reached Redis but whose reply was lost keeps its ledger row.

A proxy in front of the tests' Redis forwards every request but can swallow the replies: the
create runs in Redis and the API never hears of it, as when Redis stalls past a socket
timeout or a connection drops after sending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from config import Settings
from tasks.db import ledger
from tasks.db.engine import make_engine, migrate
from tasks.errors import ValidationFailed
from tasks.live_store import LiveStore
from tasks.service import HwqService

DEVICE = "dev0"
SUBMISSION = {"kind": "line", "payload": "*IDN?", "timeout_s": 5.0}


class ReplySwallowingProxy:
    """A TCP proxy to Redis that forwards requests always and replies only while `open`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.replies = threading.Event()
        self.replies.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The redis:// URL clients use instead of the server's."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, is_reply: bool) -> None:
        try:
            while data := source.recv(65536):
                if not is_reply or self.replies.is_set():
                    target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        # A listener's close alone leaves a thread blocked in accept() accepting still.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[ReplySwallowingProxy]:
    parsed = urlparse(redis_url)
    proxy = ReplySwallowingProxy((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    yield proxy
    proxy.close()


@pytest.fixture
def service(
    proxy: ReplySwallowingProxy, settings: Settings, tmp_path: Path
) -> Iterator[HwqService]:
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    engine.dispose()
    service = HwqService(dataclasses.replace(settings, redis_url=proxy.url))
    # Short waits keep the test quick; the logic is the one a 5 s stall goes through.
    service.reply_timeout_s = 0.5
    service.create_retry_pause_s = 0.1
    for device in (DEVICE, "warm"):
        service.live.put_device_config(device, {"name": device, "address": "loop://"})
    # While replies still come: Redis learns the script, and the admission verdict, cached
    # for a second, is taken.
    service.submit("warm", "alice", SUBMISSION)
    # A submission to the device itself would queue a command; a refused one (a kind its
    # codec does not take) reads its settings into the cache all the same.
    with contextlib.suppress(ValidationFailed):
        service.submit(DEVICE, "alice", {"kind": "frame", "payload": {"command_id": 0}})
    yield service
    service.engine.dispose()


def _row_exists(service: HwqService, command_id: str) -> bool:
    with service.sessions() as session:
        return ledger.get_command(session, command_id) is not None


def _commands_in_redis(redis_client: redis.Redis, service: HwqService) -> list[str]:
    """The device's queued commands, read past the proxy."""
    return LiveStore(redis_client, service.live.prefix).queued_ids(DEVICE)


def test_a_create_whose_reply_never_comes_is_accepted_with_its_row_kept(
    service: HwqService, proxy: ReplySwallowingProxy, redis_client: redis.Redis
) -> None:
    """Defect: the API answered 503 and deleted the ledger row, yet the create had run."""
    proxy.replies.clear()
    command = service.submit(DEVICE, "alice", SUBMISSION)
    assert command["state"] == "queued"
    assert _row_exists(service, command["id"])
    assert _commands_in_redis(redis_client, service) == [command["id"]]
    # Sent four times, queued once: every create after the first found the command.
    assert redis_client.llen(service.live.broker_queue_key(DEVICE)) == 1


def test_a_create_sent_again_returns_the_time_redis_stamped_the_first_time(
    service: HwqService, proxy: ReplySwallowingProxy, redis_client: redis.Redis
) -> None:
    proxy.replies.clear()
    threading.Timer(0.7, proxy.replies.set).start()  # the first reply is lost, later ones come
    command = service.submit(DEVICE, "alice", SUBMISSION)
    stored = LiveStore(redis_client, service.live.prefix).get(command["id"])
    assert stored is not None
    assert command["created_at"] == stored["created_at"]
    assert redis_client.llen(service.live.broker_queue_key(DEVICE)) == 1


def test_a_create_that_could_not_be_sent_leaves_nothing_behind(
    service: HwqService, proxy: ReplySwallowingProxy, redis_client: redis.Redis
) -> None:
    proxy.close()
    service.redis.connection_pool.disconnect()
    with pytest.raises(redis.ConnectionError):
        service.submit(DEVICE, "alice", SUBMISSION)
    assert _commands_in_redis(redis_client, service) == []
    with service.sessions() as session:
        assert [row.id for row in ledger.unfinished(session) if row.device == DEVICE] == []
