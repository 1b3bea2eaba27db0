"""Device programs in their sandbox: each way a program may attack its host is contained.

The programs run in real subprocesses, confined as on a device worker's host. Where this
machine refuses a confinement (no namespaces, not root), the tests of what it provides are
skipped and the README says what still holds.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.sandbox_attacks import outside_folder
from tasks.errors import DeviceError
from worker_host.program_limits import DEFAULT_HIDDEN_PATHS, ProgramLimits
from worker_host.program_sandbox import run_program

REPO = Path(__file__).resolve().parents[2]


def _run(source: str, timeout_s: float = 10.0, **kwargs: object) -> dict[str, object]:
    return run_program(textwrap.dedent(source), timeout_s, **kwargs)  # type: ignore[arg-type]


def _confined() -> bool:
    """Whether this machine gives programs their namespaces (a private /proc shows PID 1)."""
    result = _run("import os; print(sorted(os.listdir('/proc'))[:1])")
    return result["stdout"] == "['1']\n"


needs_namespaces = pytest.mark.skipif(
    not _confined(), reason="this machine refuses the sandbox's namespaces (see the README)"
)


def _processes_named(name: str) -> list[int]:
    """Live processes of that name; a zombie is dead, whoever has yet to reap it."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or Path(f"/proc/{entry}/comm").read_text().strip() != name:
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry))
    return found


def test_a_program_answers_stdout_stderr_and_exit_code() -> None:
    result = _run("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert result == {"stdout": "out\n", "stderr": "err\n", "exit_code": 3}


def test_an_exception_is_its_traceback_and_exit_code_1() -> None:
    result = _run("raise ValueError('bad input')")
    assert result["exit_code"] == 1
    assert "ValueError: bad input" in str(result["stderr"])
    assert "program_child" not in str(result["stderr"])  # the sandbox's own frames left out


def test_an_endless_loop_is_killed_at_its_timeout() -> None:
    started = time.monotonic()
    result = _run("print('started', flush=True)\nwhile True: pass", timeout_s=1.0)
    assert result["error"] == "timed_out: the program did not finish within 1 s"
    assert result["stdout"] == "started\n"  # what it printed before is kept
    assert result["exit_code"] == -9
    assert time.monotonic() - started < 15


def test_a_10_gib_allocation_fails_inside_the_program() -> None:
    result = _run("x = bytearray(10 * 1024 ** 3)")
    assert result["exit_code"] == 1
    assert "MemoryError" in str(result["stderr"])


def test_a_huge_file_stops_at_the_file_size_limit() -> None:
    limits = ProgramLimits(file_bytes=1024 * 1024)
    result = _run(
        """
        with open('big', 'wb') as f:
            f.write(b'x' * (50 * 1024 * 1024))
        """,
        limits=limits,
    )
    assert result["exit_code"] == 1
    assert "File too large" in str(result["stderr"])


def test_printing_100_mb_keeps_the_cap_and_says_truncated() -> None:
    limits = ProgramLimits(output_bytes=64 * 1024)
    result = _run("import sys; sys.stdout.write('x' * 100_000_000)", timeout_s=30, limits=limits)
    stdout = str(result["stdout"])
    assert result["truncated"] == ["stdout"]
    assert stdout.startswith("x" * 64 * 1024)
    assert "[truncated: 100000000 bytes written, the first 65536 kept]" in stdout
    assert len(stdout) < 64 * 1024 + 200


def test_the_worker_environment_never_reaches_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWQ_DATABASE_URL", "postgresql+psycopg://hwq:dbsecret@db/hwq")
    monkeypatch.setenv("HWQ_TOKEN", "hwq_tokensecret")
    result = _run(
        """
        import os
        print(sorted(os.environ))
        for pid in os.listdir('/proc'):
            try:
                print(open(f'/proc/{pid}/environ', 'rb').read())
            except OSError:
                pass
        """
    )
    assert result["exit_code"] == 0, result
    assert "dbsecret" not in str(result["stdout"])
    assert "tokensecret" not in str(result["stdout"])
    assert "HWQ_" not in str(result["stdout"])


def test_only_the_device_channel_is_open_in_the_program() -> None:
    # The worker's port, Redis connections and pipes stay the worker's.
    result = _run("import os; print(len(os.listdir('/proc/self/fd')))")
    # stdin, stdout, stderr, the device socket, and the descriptor listdir itself opens.
    assert result["stdout"] == "5\n", result


@needs_namespaces
def test_etc_passwd_and_the_hosts_files_are_not_visible() -> None:
    result = _run(
        """
        import os
        for path in ('/etc/passwd', '/root', '/home', '/var', '/run'):
            print(path, sorted(os.listdir(path)) if os.path.isdir(path) else os.path.exists(path))
        """
    )
    # Only the interpreter's own folder is bound back in, where it lies under a hidden one.
    prefix = Path(os.path.realpath(sys.base_prefix))
    interpreter = [prefix.parts[2]] if prefix.parts[1] == "root" else []
    lines = str(result["stdout"]).splitlines()
    assert lines == ["/etc/passwd False", f"/root {interpreter}", "/home []", "/var []", "/run []"]


@pytest.fixture
def hwq_home() -> Iterator[Path]:
    """A home folder outside /tmp, with a database and a token in it, as a host keeps one."""
    home = Path(tempfile.mkdtemp(prefix="program-home-", dir=REPO))
    (home / "hwq.db").write_text("SQLite format 3 and commands")
    (home / "admin.token").write_text("hwq_admin_secret")
    yield home
    shutil.rmtree(home)


@needs_namespaces
def test_the_hwq_home_its_database_and_tokens_are_not_visible(hwq_home: Path) -> None:
    limits = ProgramLimits(hidden_paths=(*DEFAULT_HIDDEN_PATHS, str(hwq_home)))
    # Hidden means empty, or not there at all where a hidden parent (/tmp) already hides it.
    source = f"""
        import os
        try:
            print(os.listdir({str(hwq_home)!r}))
        except FileNotFoundError:
            print([])
        """
    result = _run(source, limits=limits)
    assert result["stdout"] == "[]\n", result


@pytest.fixture
def program_users_folder() -> Iterator[Path]:
    """A folder outside the program's own that the program's user owns (the worker's own
    files, for a worker that is not root)."""
    folder = Path(tempfile.mkdtemp(prefix="program-owned-", dir=outside_folder()))
    user = pwd.getpwnam("nobody")
    if os.getuid() == 0:
        os.chown(folder, user.pw_uid, user.pw_gid)
    yield folder
    shutil.rmtree(folder)


@needs_namespaces
def test_nothing_outside_its_own_folder_is_writable_even_what_its_user_owns(
    program_users_folder: Path,
) -> None:
    result = _run(
        f"""
        for path in ({str(program_users_folder / "escaped.txt")!r}, 'mine.txt', '/dev/null'):
            try:
                open(path, 'w').write('x')
                print(path, 'written')
            except OSError as e:
                print(path, e.strerror)
        """
    )
    assert str(result["stdout"]).splitlines() == [
        f"{program_users_folder / 'escaped.txt'} Read-only file system",
        "mine.txt written",
        "/dev/null written",
    ], result
    assert list(program_users_folder.iterdir()) == []


@needs_namespaces
def test_a_socket_cannot_reach_anything() -> None:
    result = _run(
        """
        import socket
        s = socket.socket()
        s.settimeout(2)
        s.connect(('127.0.0.1', 6379))
        """
    )
    assert result["exit_code"] == 1
    assert "Network is unreachable" in str(result["stderr"])


@needs_namespaces
def test_killing_the_parent_or_the_worker_reaches_neither() -> None:
    result = _run(
        f"""
        import os, signal
        for pid in (os.getppid(), {os.getpid()}):
            try:
                os.kill(pid, signal.SIGKILL)
                print(pid, 'sent')
            except OSError as e:
                print(pid, type(e).__name__)
        print('still here')
        """
    )
    # In its own PID namespace the program's parent is 0 (sending to 0 reaches only its own
    # group, where it is init and immune), and the worker's PID names no process there.
    assert result["exit_code"] == 0, result
    assert "still here" in str(result["stdout"])
    assert f"{os.getpid()} ProcessLookupError" in str(result["stdout"])


@needs_namespaces
def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing() -> None:
    marker = f"bomb{uuid.uuid4().hex[:8]}"
    result = _run(
        f"""
        import ctypes, os, time
        ctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)
        made = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                made += 1
        except OSError as e:
            print('refused after', made, type(e).__name__)
        """,
        limits=ProgramLimits(max_processes=8),
    )
    assert "refused after" in str(result["stdout"]), result
    assert int(str(result["stdout"]).split()[2]) <= 8
    assert _processes_named(marker) == []


@needs_namespaces
def test_a_detached_orphan_is_killed_with_its_program() -> None:
    marker = f"orph{uuid.uuid4().hex[:8]}"
    result = _run(
        f"""
        import ctypes, os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                ctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)
                time.sleep(60)
            os._exit(0)
        time.sleep(0.5)
        print('left it running')
        """
    )
    assert result["stdout"] == "left it running\n", result
    assert _processes_named(marker) == []


def test_the_private_folder_is_removed_afterwards() -> None:
    before = set(Path(tempfile.gettempdir()).glob("hwq-program-*"))
    _run("open('left.txt', 'w').write('x')")
    assert set(Path(tempfile.gettempdir()).glob("hwq-program-*")) == before


class _Instrument:
    """A device behind the program's channel that answers queries and keeps what it is sent."""

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def read(self, timeout: float, size: int) -> bytes:
        return b"raw reply"[:size]

    def query(self, text: str, timeout: float) -> str:
        if text == "BROKEN":
            raise DeviceError("the port is gone")
        return f"answer to {text}"


def test_the_device_api_reaches_the_device_through_the_worker() -> None:
    instrument = _Instrument()
    result = _run(
        """
        import device
        print(device.query('*IDN?'))
        device.write(b'\\x01\\x02')
        print(device.read(timeout=0.5))
        try:
            device.query('BROKEN')
        except OSError as e:
            print('error:', e)
        """,
        device=instrument,
    )
    assert result["stdout"] == ("answer to *IDN?\nb'raw reply'\nerror: the port is gone\n"), result
    assert instrument.written == b"\x01\x02"


def test_without_a_device_the_device_api_says_so() -> None:
    result = _run("device.query('*IDN?')")
    assert result["exit_code"] == 1
    assert "this program has no device" in str(result["stderr"])


def test_without_namespaces_the_limits_still_hold_and_the_rest_is_as_documented(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As on a host that refuses unshare: the README's "What it does not guarantee".
    monkeypatch.setenv("HWQ_TOKEN", "hwq_tokensecret")
    limits = ProgramLimits(namespaces=False, file_bytes=1024 * 1024)
    marker = f"kid{uuid.uuid4().hex[:8]}"
    result = _run(
        f"""
        import ctypes, os, time
        print(sorted(os.environ))
        try:
            bytearray(10 * 1024 ** 3)
        except MemoryError:
            print('memory limited')
        try:
            open('big', 'wb').write(b'x' * (5 * 1024 * 1024))
        except OSError:
            print('file size limited')
        print('sees the host', os.path.exists('/etc/passwd'), flush=True)
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)
            time.sleep(60)
        while True:
            pass
        """,
        timeout_s=2.0,
        limits=limits,
    )
    lines = str(result["stdout"]).splitlines()
    assert lines == [
        "['HOME', 'LANG', 'PATH', 'TMPDIR']",
        "memory limited",
        "file size limited",
        "sees the host True",
    ], result
    assert str(result["error"]).startswith("timed_out")
    # A child in the program's process group is killed with it (a detached one may not be);
    # SIGKILL is sent at once, and a busy machine may take a moment to finish it off.
    deadline = time.monotonic() + 5
    while _processes_named(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_named(marker) == []
    assert "program not fully confined" in caplog.text
    assert result["stderr"] == ""  # the sandbox's note went to the log, not to the program's


def test_an_unknown_program_user_is_a_device_error_before_anything_runs() -> None:
    with pytest.raises(DeviceError, match="HWQ_PROGRAM_USER"):
        _run("print(1)", limits=ProgramLimits(user="no-such-user-here"))


@needs_namespaces
def test_the_program_user_is_the_one_configured() -> None:
    result = _run("import os; print(os.getuid(), os.getgid())", limits=ProgramLimits(user="daemon"))
    daemon = pwd.getpwnam("daemon")
    expected = f"{daemon.pw_uid} {daemon.pw_gid}\n" if os.getuid() == 0 else (
        f"{os.getuid()} {os.getgid()}\n")  # fmt: skip
    assert result["stdout"] == expected, result
