"""The sandboxed side of a device program: confine this process, then run the program.

Started by `worker_host.program_sandbox` as `python -I -S program_child.py <settings JSON>`,
in a session of its own, with stdout and stderr on pipes and one socket (the device channel)
as its only other descriptor. It imports the standard library only: `-I` keeps the worker's
packages, `PYTHONPATH` and the current folder off `sys.path`.

Confinement, each step where the OS allows it (what was refused is reported on stderr's first
line as `hwq-sandbox: …` only when something was, and the parent strips that line):
- new network, PID and mount namespaces (a user namespace too when not started as root), so
  the program has no network, sees no other process and cannot signal its worker;
- private empty file systems over the paths it must not read (the host's home folder, /etc,
  /root, /home, /tmp, …), the interpreter's own folder bound back in so imports still work,
  every mount made read-only, and a size-capped tmpfs as its working folder;
- another user (`nobody`) when started as root, so its process count is limited and the
  worker's files stay the worker's;
- resource limits: address space, CPU seconds, file size, processes, open files, no core.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import resource
import signal
import socket
import sys
import traceback
import types
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
# mount_setattr(2) (Linux 5.12+): the same number on every architecture.
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
# Where the program works and what HOME and TMPDIR name, inside its own mount namespace.
PROGRAM_DIR = "/tmp/program"
# Longest reply line the parent may send on the device channel (a read of at most 1 MiB).
MAX_REPLY_BYTES = 4 * 1024 * 1024
# Exit status the outer process reports for a program ended by a signal: 128 + the signal.
SIGNAL_EXIT_BASE = 128

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: Any) -> None:
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _call(
        "mount",
        None if source is None else source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


class Confinement:
    """What this run achieved, so the parent and the README can be honest about it."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.namespaces = 0
        self.refused: list[str] = []
        self.mounted = False

    def enter_namespaces(self) -> None:
        """New network, PID and mount namespaces; through a user namespace when not root."""
        if not self.settings.get("namespaces", True):
            self.refused.append("namespaces (not tried)")
            return
        wanted = CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWNS
        uid, gid = os.getuid(), os.getgid()
        attempts = [wanted] if uid == 0 else []
        attempts.append(wanted | CLONE_NEWUSER)
        for flags in attempts:
            try:
                _call("unshare", ctypes.c_int(flags))
            except OSError as e:
                last = e
                continue
            self.namespaces = flags
            if flags & CLONE_NEWUSER:
                # Map this user to itself, so files it makes still belong to it.
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"{uid} {uid} 1")
                _write("/proc/self/gid_map", f"{gid} {gid} 1")
            return
        self.refused.append(f"namespaces ({last.strerror})")

    def hide_paths(self, workdir_bytes: int) -> None:
        """Empty file systems over hidden paths; the interpreter bound back; a capped /tmp."""
        if not self.namespaces & CLONE_NEWNS:
            self.refused.append("private file system (no mount namespace)")
            return
        try:
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            staged = []
            for index, keep in enumerate(self.settings["keep"]):
                stage = os.path.join(self.settings["stage"], str(index))
                os.mkdir(stage)
                _mount(keep, stage, None, MS_BIND | MS_REC)
                staged.append((stage, keep))
            for hidden in self.settings["hidden"]:
                if os.path.isdir(hidden) and hidden != "/tmp":
                    _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
            for stage, keep in staged:
                os.makedirs(keep, exist_ok=True)
                _mount(stage, keep, None, MS_MOVE)
            self.read_only_tree()
            _mount(
                "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={workdir_bytes},mode=1777"
            )
            os.mkdir(PROGRAM_DIR, 0o700)
        except OSError as e:
            self.refused.append(f"private file system ({e.strerror})")
            return
        self.mounted = True

    def read_only_tree(self) -> None:
        """Every mount the program sees made read-only, so it writes nowhere but its own
        folder (mounted after this), whatever a path's owner: a worker that is not root
        confines its programs as its own user, who may own much of the tree."""
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
        result = _libc.syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b"/",
            ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
        )  # fmt: skip
        if result != 0:
            err = ctypes.get_errno()
            self.refused.append(f"read-only file system ({os.strerror(err)})")

    def mount_proc(self) -> None:
        """A /proc of the new PID namespace: the program sees its own processes only."""
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError as e:
            self.refused.append(f"private /proc ({e.strerror})")

    def drop_user(self) -> None:
        """Become the program user when started as root (only once the interpreter is reachable)."""
        if os.getuid() != 0 or self.namespaces & CLONE_NEWUSER:
            return
        if not self.mounted:
            self.refused.append("other user (the interpreter would not be readable)")
            return
        # Looked up by the worker: /etc is hidden by now.
        uid, gid = int(self.settings["uid"]), int(self.settings["gid"])
        os.chown(PROGRAM_DIR, uid, gid)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    def limit_resources(self) -> None:
        """The kernel's limits: what the program may take however it tries."""
        settings = self.settings
        limits = [
            (resource.RLIMIT_AS, settings["memory_bytes"]),
            (resource.RLIMIT_CPU, settings["cpu_s"]),
            (resource.RLIMIT_FSIZE, settings["file_bytes"]),
            (resource.RLIMIT_NOFILE, settings["open_files"]),
            (resource.RLIMIT_CORE, 0),
        ]
        if os.getuid() != 0:
            # Counted per user across the machine: room for the user's others and the program.
            limits.append(
                (resource.RLIMIT_NPROC, _processes_of(os.getuid()) + settings["processes"])
            )
        for which, value in limits:
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError) as e:
                self.refused.append(f"limit {which} ({e})")


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                continue
    return count


def _end_with_parent() -> None:
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except AttributeError:
        return


class DeviceChannel:
    """The device, as the program sees it: requests to the worker over a socket.

    The worker performs them on the real port; the port's descriptor never comes here.
    """

    def __init__(self, fd: int | None) -> None:
        self._socket = None if fd is None else socket.socket(fileno=fd)
        self._buffer = b""

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._socket is None:
            raise RuntimeError("this program has no device")
        self._socket.sendall(json.dumps(request).encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk or len(self._buffer) > MAX_REPLY_BYTES:
                raise RuntimeError("the device channel closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise OSError(reply["error"])
        return reply

    def write(self, data: bytes | str) -> int:
        """Send bytes (text is sent as UTF-8) to the device as they are; the count sent."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._ask({"op": "write", "data": base64.b64encode(raw).decode()})
        return len(raw)

    def read(self, timeout: float = 1.0, size: int = 65536) -> bytes:
        """Bytes the device sent within `timeout` seconds (b"" if none came), at most `size`."""
        reply = self._ask({"op": "read", "timeout": float(timeout), "size": int(size)})
        return base64.b64decode(reply["data"])

    def query(self, text: str, timeout: float = 5.0) -> str:
        """Send one line (the device's line ending is added) and return the line it answers."""
        return str(self._ask({"op": "query", "text": str(text), "timeout": float(timeout)})["text"])


def _device_module(channel: DeviceChannel) -> types.ModuleType:
    module = types.ModuleType("device", "The device this program runs beside.")
    module.write = channel.write  # type: ignore[attr-defined]
    module.read = channel.read  # type: ignore[attr-defined]
    module.query = channel.query  # type: ignore[attr-defined]
    return module


def run_program(source: str, device: types.ModuleType) -> None:
    """Run the program as `__main__`, `device` importable and a global; exit as it ends."""
    sys.modules["device"] = device
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, "device": device}
    try:
        code = compile(source, "<program>", "exec")
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as e:
        # The program's own frames only: this file's are no business of its author.
        traceback.print_exception(type(e), e, e.__traceback__ and e.__traceback__.tb_next)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()


def _end_as(pid: int) -> None:
    """End as the program's process ended: its exit status, or killed by its signal."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            os._exit(1)
        if os.WIFEXITED(status):
            os._exit(os.WEXITSTATUS(status))
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            # The same signal, so the worker tells a kill from an exit status.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            os._exit(SIGNAL_EXIT_BASE + sig)


def main(argv: list[str]) -> None:
    """Confine, then run the program (in a child that is PID 1 of its own namespace)."""
    settings = json.loads(argv[1])
    _end_with_parent()
    with open(settings["source"], encoding="utf-8") as handle:
        source = handle.read()
    confinement = Confinement(settings)
    confinement.enter_namespaces()
    confinement.hide_paths(settings["workdir_bytes"])
    workdir = PROGRAM_DIR if confinement.mounted else os.path.dirname(settings["source"])
    pid = os.fork() if confinement.namespaces & CLONE_NEWPID else 0
    if pid:
        # The outer process: stays outside the program's PID namespace, only waits.
        _end_as(pid)
    _end_with_parent()
    if confinement.namespaces & CLONE_NEWPID and confinement.mounted:
        confinement.mount_proc()
    confinement.drop_user()
    confinement.limit_resources()
    if confinement.refused:
        sys.stderr.write(f"hwq-sandbox: not confined by {'; '.join(confinement.refused)}\n")
        sys.stderr.flush()
    os.chdir(workdir)
    os.environ.update({"HOME": workdir, "TMPDIR": workdir})
    fd = settings.get("device_fd")
    run_program(source, _device_module(DeviceChannel(fd)))


if __name__ == "__main__":
    main(sys.argv)
