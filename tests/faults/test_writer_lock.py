"""A stalled SQLite writer no longer blocks every other one: the wait for the writer lock is
bounded, its file is shared by roles running as different users.

Defect: the lock's wait had no bound, so a writer stopped while it held the lock (a process
paused, a disk that hangs) held every submission, registration and token change for ever; it
was not taken for device and token writes at all; and its file was made 0600, so a role
running as another user could not open it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lock_holder import writer_lock_held
from sqlalchemy import create_engine

from bench.local_stack import Stack
from config.settings import DEFAULT_SQLITE_LOCK_TIMEOUT_S
from tasks.db.engine import make_engine
from tasks.db.write_lock import LOCK_SUFFIX, writer_turn
from tasks.errors import WriterBusy

# Beyond the lock's timeout, what a refusal may take to come back on a busy machine.
ANSWER_MARGIN_S = 15.0
# The user a second role runs as in the shared-folder test: nobody/nogroup.
OTHER_USER = 65534


def _timed(stack: Stack, method: str, path: str, body: object = None) -> tuple[float, object]:
    started = time.monotonic()
    reply = stack.request(method, path, body=body, timeout=DEFAULT_SQLITE_LOCK_TIMEOUT_S + 60)
    return time.monotonic() - started, reply


def test_writes_get_503_with_retry_after_while_another_writer_stalls(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    command = {"kind": "line", "payload": "ECHO stalled"}
    token_id = stack.request("GET", "/tokens").body["items"][0]["id"]
    with writer_lock_held(stack.home / "hwq.db"):
        for method, path, body in (
            ("POST", f"/devices/{device_name}/commands", command),
            ("POST", "/devices", {"name": f"{device_name}-2", "address": "loop://"}),
            ("PATCH", f"/devices/{device_name}", {"baudrate": 9600}),
            ("DELETE", f"/tokens/{token_id + 1000}", None),
        ):
            waited, reply = _timed(stack, method, path, body)
            assert reply.status == 503, (path, reply.body)
            assert reply.headers["Retry-After"] == str(round(DEFAULT_SQLITE_LOCK_TIMEOUT_S))
            assert reply.body["type"] == "https://hwq.dev/problems/writer-busy"
            assert waited < DEFAULT_SQLITE_LOCK_TIMEOUT_S + ANSWER_MARGIN_S, (path, waited)
    # Let go: the same requests go through, and the refused ones left nothing behind.
    done = stack.wait(stack.submit(device_name, "ECHO after"))
    assert done["response"] == {"text": "after"}
    history = stack.request("GET", f"/commands?device={device_name}").body["items"]
    assert [item["payload"] for item in history] == ["ECHO after"]
    assert stack.request("GET", f"/devices/{device_name}-2").status == 404
    assert stack.device(device_name)["baudrate"] != 9600


def test_a_new_lock_file_takes_the_databases_permissions(tmp_path: Path) -> None:
    database = tmp_path / "hwq.db"
    old_umask = os.umask(0o077)
    try:
        database.touch()
        database.chmod(0o660)  # shared with a group, as the README says
        with writer_turn(create_engine(f"sqlite:///{database}")):
            pass
    finally:
        os.umask(old_umask)
    lock = Path(f"{database}{LOCK_SUFFIX}")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o660


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder of the group nogroup, setgid, where two users run roles on one database."""
    folder = Path(tempfile.mkdtemp(prefix="hwq-shared-", dir="/tmp"))
    os.chown(folder, 0, OTHER_USER)
    folder.chmod(0o2770)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run a role as another user",
)
def test_roles_running_as_different_users_take_turns(shared_folder: Path) -> None:
    database = shared_folder / "hwq.db"
    old_umask = os.umask(0o007)
    try:
        engine = make_engine(f"sqlite:///{database}", lock_timeout_s=0.5)
        with engine.begin() as connection:  # the database, made by this user, 0660
            connection.exec_driver_sql("CREATE TABLE t (x)")
        with writer_turn(engine):  # the lock file, made by this user too
            pass
        with writer_lock_held(database, user=OTHER_USER):
            started = time.monotonic()
            with pytest.raises(WriterBusy) as refused, writer_turn(engine):
                pass
            assert time.monotonic() - started < 0.5 + ANSWER_MARGIN_S
            assert refused.value.retry_after_s == 1
        with writer_turn(engine):  # and the turn comes back once the other lets go
            pass
        engine.dispose()
    finally:
        os.umask(old_umask)
