"""What one device program may take: the sandbox's limits, from the host's settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from config.settings import (
    DEFAULT_PROGRAM_FILE_MB,
    DEFAULT_PROGRAM_MAX_OPEN_FILES,
    DEFAULT_PROGRAM_MAX_PROCESSES,
    DEFAULT_PROGRAM_MEMORY_MB,
    DEFAULT_PROGRAM_OUTPUT_KIB,
    DEFAULT_PROGRAM_USER,
    DEFAULT_PROGRAM_WORKDIR_MB,
    Settings,
)

MIB = 1024 * 1024
# Paths a program never sees when the OS gives it a mount namespace: system and user
# configuration, users' homes, other processes' temporary files and runtime sockets.
DEFAULT_HIDDEN_PATHS = (
    "/etc", "/root", "/home", "/tmp", "/var", "/run", "/srv", "/mnt", "/media", "/dev/shm",
)  # fmt: skip
# CPU seconds beyond the wall-clock timeout before the kernel ends a program that spins.
CPU_MARGIN_S = 1


@dataclass(frozen=True)
class ProgramLimits:
    """The sandbox's bounds for one program (HWQ_PROGRAM_* settings)."""

    memory_bytes: int = DEFAULT_PROGRAM_MEMORY_MB * MIB
    file_bytes: int = DEFAULT_PROGRAM_FILE_MB * MIB
    max_processes: int = DEFAULT_PROGRAM_MAX_PROCESSES
    max_open_files: int = DEFAULT_PROGRAM_MAX_OPEN_FILES
    workdir_bytes: int = DEFAULT_PROGRAM_WORKDIR_MB * MIB
    output_bytes: int = DEFAULT_PROGRAM_OUTPUT_KIB * 1024
    user: str = DEFAULT_PROGRAM_USER
    hidden_paths: tuple[str, ...] = field(default=DEFAULT_HIDDEN_PATHS)
    # False: do not even try namespaces, as where the OS refuses them (tests of that case).
    namespaces: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ProgramLimits:
        """The limits the host's settings ask for; its home folder is always hidden."""
        extra = [p.strip() for p in settings.program_hidden_paths.split(",") if p.strip()]
        hidden = (*DEFAULT_HIDDEN_PATHS, os.path.abspath(settings.home), *extra)
        return cls(
            memory_bytes=settings.program_memory_mb * MIB,
            file_bytes=settings.program_file_mb * MIB,
            max_processes=settings.program_max_processes,
            max_open_files=settings.program_max_open_files,
            workdir_bytes=settings.program_workdir_mb * MIB,
            output_bytes=settings.program_output_kib * 1024,
            user=settings.program_user,
            hidden_paths=tuple(dict.fromkeys(hidden)),
        )
