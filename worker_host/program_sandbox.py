"""Run a device program (`kind: "python"`, DESIGN §11) in a sandboxed subprocess.

The child (`worker_host/program_child.py`) confines itself before the program's first line
runs; this side bounds it from outside: a wall-clock timeout that kills every process the
program started, output kept up to a cap, an environment with nothing of the worker's in it,
and a private folder removed afterwards. The program reaches its device only through requests
on a socket, which this side performs on the real transport (`program_device.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tasks.errors import DeviceError
from worker_host.program_device import DeviceBroker, ProgramDevice
from worker_host.program_limits import CPU_MARGIN_S, ProgramLimits

log = logging.getLogger("hwq.program")

CHILD_SCRIPT = Path(__file__).with_name("program_child.py")
# The whole environment a program gets: nothing of the worker's (no HWQ_*, no tokens).
PROGRAM_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# After the program's process ends, how long output its leftovers still write is read.
OUTPUT_GRACE_S = 0.5
# The child's note about confinement the OS refused, on the first line of its stderr.
CONFINEMENT_NOTE = b"hwq-sandbox: "
# How often the process tree is swept for survivors when a program is killed.
KILL_SWEEPS = 20


@dataclass
class _Capture:
    """One output stream: its first `limit` bytes kept, the rest counted."""

    limit: int
    kept: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        self.total += len(chunk)

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            text += f"\n[truncated: {self.total} bytes written, the first {len(self.kept)} kept]"
        return text

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)


def run_program(
    source: str,
    timeout_s: float,
    device: ProgramDevice | None = None,
    limits: ProgramLimits | None = None,
) -> dict[str, Any]:
    """Run `source` in the sandbox; `{stdout, stderr, exit_code}`, plus `error` when it was
    killed (`timed_out: …` or `killed: …`) and `truncated` naming any stream cut short.

    `device`: what the program's `device.write/read/query` reach (None: they raise).
    """
    limits = limits or ProgramLimits()
    workdir = Path(tempfile.mkdtemp(prefix="hwq-program-"))
    parent_end, child_end = socket.socketpair()
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8")
        (workdir / "stage").mkdir()
        process = _start(workdir, child_end.fileno(), timeout_s, limits)
        child_end.close()
        run = _ProgramRun(process, parent_end, DeviceBroker(device), limits)
        return run.wait(timeout_s)
    finally:
        child_end.close()
        parent_end.close()
        shutil.rmtree(workdir, ignore_errors=True)


def program_user(user: str) -> tuple[int, int]:
    """The uid and gid a program runs as when the worker is root; DeviceError if unknown."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        if user.isdigit():
            return int(user), int(user)
        raise DeviceError(f"the program user {user!r} does not exist on this host "
                          "(HWQ_PROGRAM_USER)") from None  # fmt: skip
    return entry.pw_uid, entry.pw_gid


def _start(workdir: Path, device_fd: int, timeout_s: float, limits: ProgramLimits) -> Any:
    uid, gid = program_user(limits.user)
    settings = {
        "source": str(workdir / "program.py"),
        "stage": str(workdir / "stage"),
        "device_fd": device_fd,
        "memory_bytes": limits.memory_bytes,
        "cpu_s": int(timeout_s) + 1 + CPU_MARGIN_S,
        "file_bytes": limits.file_bytes,
        "open_files": limits.max_open_files,
        "processes": limits.max_processes,
        "workdir_bytes": limits.workdir_bytes,
        "uid": uid,
        "gid": gid,
        "hidden": list(limits.hidden_paths),
        "namespaces": limits.namespaces,
        # The interpreter's folder, bound back in where a hidden path covers it.
        "keep": [os.path.realpath(sys.base_prefix)],
    }
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(CHILD_SCRIPT), json.dumps(settings)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=PROGRAM_ENVIRONMENT,
        cwd=workdir,
        pass_fds=(device_fd,),
        start_new_session=True,
    )


class _ProgramRun:
    """One running program: its output read, its device requests served, until it ends."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        channel: socket.socket,
        broker: DeviceBroker,
        limits: ProgramLimits,
    ) -> None:
        self.process = process
        self.channel = channel
        self.broker = broker
        self.stdout = _Capture(limits.output_bytes)
        self.stderr = _Capture(limits.output_bytes + len(CONFINEMENT_NOTE) + 512)
        self._selector = selectors.DefaultSelector()

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """Serve the program until it ends or its time is up; its result."""
        assert self.process.stdout is not None and self.process.stderr is not None
        streams: dict[IO[bytes], _Capture] = {
            self.process.stdout: self.stdout,
            self.process.stderr: self.stderr,
        }
        for stream in streams:
            os.set_blocking(stream.fileno(), False)
            self._selector.register(stream, selectors.EVENT_READ)
        self._selector.register(self.channel, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        error = None
        try:
            error = self._pump(streams, deadline)
        finally:
            self._selector.close()
            self._kill_all()
        return self._result(error, timeout_s)

    def _pump(self, streams: dict[IO[bytes], _Capture], deadline: float) -> str | None:
        ended_at: float | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "timed_out"
            if not self._selector.get_map():
                # Every stream is closed: the program is ending, or it closed them itself.
                try:
                    self.process.wait(timeout=deadline - now)
                except subprocess.TimeoutExpired:
                    return "timed_out"
                return None
            if ended_at is None and self.process.poll() is not None:
                ended_at = now
            if ended_at is not None and now - ended_at > OUTPUT_GRACE_S:
                return None
            wait = min(deadline - now, OUTPUT_GRACE_S if ended_at is not None else 0.2)
            for key, _ in self._selector.select(wait):
                if key.fileobj is self.channel:
                    self._serve_device(deadline)
                    continue
                stream = key.fileobj
                assert not isinstance(stream, (int, socket.socket))
                chunk = os.read(stream.fileno(), 65536)
                if chunk:
                    streams[stream].add(chunk)  # type: ignore[index]
                else:
                    self._selector.unregister(stream)

    def _serve_device(self, deadline: float) -> None:
        try:
            chunk = self.channel.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._selector.unregister(self.channel)
            return
        for reply in self.broker.feed(chunk, deadline):
            try:
                self.channel.sendall(reply)
            except OSError:
                self._selector.unregister(self.channel)
                return

    def _kill_all(self) -> None:
        """SIGKILL the program's process and every process under it, then reap it."""
        root = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root, signal.SIGKILL)
        for _ in range(KILL_SWEEPS):
            survivors = _descendants(root)
            if self.process.poll() is None:
                survivors.append(root)
            if not survivors:
                break
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def _result(self, error: str | None, timeout_s: float) -> dict[str, Any]:
        code = self.process.returncode
        stderr = self.stderr.text()
        if stderr.startswith(CONFINEMENT_NOTE.decode()):
            note, _, stderr = stderr.partition("\n")
            log.warning("program not fully confined", extra={"note": note})
        result: dict[str, Any] = {
            "stdout": self.stdout.text(),
            "stderr": stderr,
            "exit_code": code,
        }
        if error == "timed_out":
            result["error"] = f"timed_out: the program did not finish within {timeout_s:g} s"
        elif code is not None and code < 0:
            result["error"] = f"killed: {_signal_name(-code)}{_why_killed(-code)}"
        truncated = [name for name, c in (("stdout", self.stdout), ("stderr", self.stderr))
                     if c.truncated]  # fmt: skip
        if truncated:
            result["truncated"] = truncated
        return result


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _why_killed(sig: int) -> str:
    if sig == signal.SIGXCPU:
        return " (CPU time limit)"
    if sig == signal.SIGXFSZ:
        return " (file size limit)"
    return ""


def _descendants(root: int) -> list[int]:
    """Every process whose chain of parents leads to `root` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The name in parentheses may hold spaces; the parent follows its closing one.
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for child in children.get(pid, []):
            found.append(child)
            frontier.append(child)
    return found
