"""What the benchmarks read about processes from /proc, and Redis's own memory count."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import redis

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Bytes in a mebibyte, for the memory figures.
MIB = 1024 * 1024


def resident_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no VmRSS for process {pid}")


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on; the name before it may hold spaces."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_ticks(pids: Iterable[int]) -> int:
    """User plus system CPU of the processes so far, in clock ticks."""
    # utime and stime are fields 14 and 15 of stat, so 11 and 12 after the name.
    return sum(int(fields[11]) + int(fields[12]) for fields in map(stat_fields, pids))


def children_of(parent: int) -> list[int]:
    """The processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(stat_fields(int(entry.name))[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue  # gone meanwhile
    return found


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (the API is a granian server and its worker)."""
    tree = [pid]
    for child in children_of(pid):
        tree += process_tree(child)
    return tree


def redis_used_bytes(redis_url: str) -> int:
    """Redis's own count of the memory its data takes (INFO used_memory)."""
    with redis.Redis.from_url(redis_url) as client:
        return int(client.info("memory")["used_memory"])


def redis_server_pid(redis_url: str) -> int:
    """The pid of the Redis server behind a URL, as the server itself reports it."""
    with redis.Redis.from_url(redis_url) as client:
        return int(client.info("server")["process_id"])
