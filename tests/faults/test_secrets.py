"""`hwq up` keeps its secrets: a banner without credentials, a home only its user can read.

Defect: the banner printed the full Redis and database URLs with their passwords, and the
database, the append-only file and the logs were created 0644 in a 0755 home.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness_http import http
from bench.local_stack import UpRun, hwq_up
from hwq.embedded_redis import find_redis_server, free_port

REDIS_PASSWORD = "s3cret-redis-pw"


def up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWQ_")}
    return {**env, "HWQ_HOSTNAME": "secrets", "XDG_RUNTIME_DIR": str(tmp_path / "run"), **extra}


def run_a_command(up: UpRun) -> None:
    """One command through every process, so each has written its files and logs."""
    deadline = time.monotonic() + 60
    while not http("GET", f"{up.base}/devices/sim0", token=up.admin_token).body["online"]:
        assert time.monotonic() < deadline, "sim0 never came online"
        time.sleep(0.3)
    reply = http("POST", f"{up.base}/devices/sim0/commands", token=up.admin_token,
                 body={"kind": "line", "payload": "*IDN?"})  # fmt: skip
    assert reply.status == 202, reply.body
    done = http("GET", f"{up.base}/commands/{reply.body['id']}?wait=4", token=up.admin_token)
    assert done.body["state"] == "done", done.body


def loose_modes(home: Path) -> list[str]:
    """Everything under `home` that anyone but its owner may read, write or enter."""
    loose = []
    for entry in [home, *home.rglob("*")]:
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode):  # a link's own mode means nothing; its target is a pty
            continue
        if mode & 0o077:
            loose.append(f"{entry.relative_to(home.parent)} {stat.filemode(mode)}")
    return loose


def test_up_creates_its_home_and_every_file_in_it_for_its_user_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with hwq_up(home, up_env(tmp_path), "--sim", "1") as up:
        run_a_command(up)
        # What the defect report found world-readable, and the rest of what hwq up writes.
        for name in ("hwq.db", "admin.token", "flower.auth", "logs/api.log",
                     "logs/server-worker.log", "sim/sim0.log"):  # fmt: skip
            assert (home / name).is_file(), name
        assert list((home / "redis").rglob("*.aof")), "no append-only file"
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert loose_modes(home) == []


def test_an_existing_home_is_made_private_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    with hwq_up(home, up_env(tmp_path)):
        assert stat.S_IMODE(home.stat().st_mode) == 0o700


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own that wants a password."""
    port = free_port()
    server = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", REDIS_PASSWORD, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_banner_and_the_logs_mask_credentials(tmp_path: Path, redis_with_password: str) -> None:
    home = tmp_path / "home"
    env = up_env(tmp_path, HWQ_REDIS_URL=redis_with_password)
    with hwq_up(home, env, "--sim", "1") as up:
        run_a_command(up)
        banner = up.banner
    redis_line = next(line for line in banner.splitlines() if "Redis:" in line)
    assert redis_line.split("Redis:")[1].strip().startswith("redis://:***@127.0.0.1:")
    assert REDIS_PASSWORD not in banner
    for log in (home / "logs").iterdir():
        assert REDIS_PASSWORD not in log.read_text(errors="replace"), log.name
