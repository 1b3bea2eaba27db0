"""Settings: HWQ_* environment variables over an optional hwq.toml over defaults."""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from config.errors import ConfigError

# Where hwq keeps its SQLite file, tokens, logs and simulator links when nothing says otherwise.
DEFAULT_HOME = "./var"
# Longest a command may wait for its reply (DESIGN §3); the visibility timeout must exceed it.
MAX_COMMAND_TIMEOUT_S = 300.0
# A message not acked within this many seconds is redelivered by the Redis transport; it must be
# longer than any command can run, or a slow command would be delivered twice (the claim makes
# that inert, but it would be noise).
DEFAULT_VISIBILITY_TIMEOUT_S = 3600
# Bodies larger than this are refused with 413 before they are parsed.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# How long a request's body may take to arrive once its head has; a slower one gets 408.
DEFAULT_BODY_TIMEOUT_S = 10.0
# Long-polls the API holds open at once, in all and per token, before it answers 503 or 429.
DEFAULT_MAX_WAITS = 1000
DEFAULT_MAX_WAITS_PER_TOKEN = 100
# Device streams (SSE) the API holds open at once, in all and per token; each holds a Redis
# connection while it blocks.
DEFAULT_MAX_STREAMS = 500
DEFAULT_MAX_STREAMS_PER_TOKEN = 50
# Commands one device may hold queued before submissions get 429.
DEFAULT_QUEUE_CAP = 1000
# A dispatched command whose worker is silent for timeout_s plus this long is taken for lost.
DEFAULT_LEASE_GRACE_S = 15.0
# A registered analyzer that runs longer than this is stopped; its verdict says so.
DEFAULT_ANALYSIS_TIMEOUT_S = 5.0
# Longest a write waits for its turn at a SQLite database before it is refused (503 with
# Retry-After): a stalled writer must not hold every submission for ever.
DEFAULT_SQLITE_LOCK_TIMEOUT_S = 5.0
# Device programs (`kind: "python"`, DESIGN §11) are off unless the host allows them; these
# bound what one program may take: address space, size of any one file it writes, processes
# and open files at once, the size of its private working folder, and the output kept of each
# of stdout and stderr.
DEFAULT_PROGRAM_MEMORY_MB = 256
DEFAULT_PROGRAM_FILE_MB = 8
DEFAULT_PROGRAM_MAX_PROCESSES = 16
DEFAULT_PROGRAM_MAX_OPEN_FILES = 64
DEFAULT_PROGRAM_WORKDIR_MB = 32
DEFAULT_PROGRAM_OUTPUT_KIB = 64
# Who a program runs as when the device worker runs as root (by name or number).
DEFAULT_PROGRAM_USER = "nobody"
# Redis keys all start with this, so tests and several installs can share one server.
DEFAULT_KEY_PREFIX = "hwq"


@dataclass(frozen=True)
class Settings:
    """Everything hwq reads from its environment, parsed and typed once."""

    home: Path = Path(DEFAULT_HOME)
    redis_url: str | None = None
    database_url: str | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_threads: int = 64
    flower_port: int = 5555
    flower_auth: str | None = None
    # The Socket.IO gateway's port; 3000 is the Peripheral Manager's.
    gateway_port: int = 3000
    hostname: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_waits: int = DEFAULT_MAX_WAITS
    max_waits_per_token: int = DEFAULT_MAX_WAITS_PER_TOKEN
    max_streams: int = DEFAULT_MAX_STREAMS
    max_streams_per_token: int = DEFAULT_MAX_STREAMS_PER_TOKEN
    queue_cap: int = DEFAULT_QUEUE_CAP
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    lease_grace_s: float = DEFAULT_LEASE_GRACE_S
    analysis_timeout_s: float = DEFAULT_ANALYSIS_TIMEOUT_S
    sqlite_lock_timeout_s: float = DEFAULT_SQLITE_LOCK_TIMEOUT_S
    allow_python: bool = False
    program_memory_mb: int = DEFAULT_PROGRAM_MEMORY_MB
    program_file_mb: int = DEFAULT_PROGRAM_FILE_MB
    program_max_processes: int = DEFAULT_PROGRAM_MAX_PROCESSES
    program_max_open_files: int = DEFAULT_PROGRAM_MAX_OPEN_FILES
    program_workdir_mb: int = DEFAULT_PROGRAM_WORKDIR_MB
    program_output_kib: int = DEFAULT_PROGRAM_OUTPUT_KIB
    program_user: str = DEFAULT_PROGRAM_USER
    # Paths a program must not see (comma-separated); the host's home folder is always hidden.
    program_hidden_paths: str = ""
    log_level: str = "INFO"
    log_json: bool = False
    # Each process keeps its threads on one CPU (worker_host/cpu_placement.py). Off by default:
    # under a CPU quota, or with several hwq installs on one machine, every central process
    # would share one core. A tuning knob for a machine that runs hwq alone.
    pin_cpu: bool = False
    # Serve Prometheus metrics at /metrics (api/metrics.py); off, the route answers 404.
    metrics: bool = False

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to SQLite under the home folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'hwq.db').resolve()}"

    @property
    def broker_url(self) -> str:
        """The Redis URL; only valid once an embedded Redis has been started if none was set."""
        if not self.redis_url:
            raise ConfigError("HWQ_REDIS_URL is not set and no embedded Redis is running")
        return self.redis_url

    @property
    def celery_broker_url(self) -> str:
        """The Redis URL as kombu spells it: kombu knows no unix://, only redis+socket://."""
        url = self.broker_url
        if not url.startswith("unix://"):
            return url
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        # redis-py names the database `db`; kombu calls it the virtual host.
        renamed = [("virtual_host" if key == "db" else key, value) for key, value in query]
        query_text = f"?{urlencode(renamed)}" if renamed else ""
        return f"redis+socket://{parts.netloc}{parts.path}{query_text}"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and `hwq up` use this)."""
        return replace(self, **changes)


def masked_url(url: str) -> str:
    """The URL fit to print: a password (or a user part that may be one) becomes ***."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return parts._replace(netloc=f"{shown}@{host}").geturl()


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _parse_positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _parse_redis_url(name: str, raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name} must be a redis:// URL, got {raw!r}")
    return raw


def _parse_database_url(name: str, raw: str) -> str:
    if not raw.startswith(("sqlite:", "postgresql")):
        raise ConfigError(f"{name} must be a sqlite:/// or postgresql+psycopg:// URL")
    return raw


def _parse_log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{name} must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def _positive(parse: Callable[[str, str], int]) -> Callable[[str, str], int]:
    def check(name: str, raw: str) -> int:
        value = parse(name, raw)
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {raw!r}")
        return value

    return check


def _visibility_timeout(name: str, raw: str) -> int:
    value = _parse_int(name, raw)
    if value <= MAX_COMMAND_TIMEOUT_S:
        raise ConfigError(
            f"{name} must exceed the longest command timeout ({MAX_COMMAND_TIMEOUT_S:.0f} s), "
            f"or a running command's message would be delivered again; got {raw!r}"
        )
    return value


def _port(name: str, raw: str) -> int:
    value = _parse_int(name, raw)
    if not 0 < value < 65536:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {raw!r}")
    return value


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "home": lambda _name, raw: Path(raw),
    "redis_url": _parse_redis_url,
    "database_url": _parse_database_url,
    "key_prefix": lambda _name, raw: raw,
    "api_host": lambda _name, raw: raw,
    "api_port": _port,
    "api_threads": _positive(_parse_int),
    "flower_port": _port,
    "flower_auth": lambda _name, raw: raw,
    "gateway_port": _port,
    "hostname": lambda _name, raw: raw,
    "max_body_bytes": _positive(_parse_int),
    "body_timeout_s": _parse_positive_float,
    "max_waits": _positive(_parse_int),
    "max_waits_per_token": _positive(_parse_int),
    "max_streams": _positive(_parse_int),
    "max_streams_per_token": _positive(_parse_int),
    "queue_cap": _positive(_parse_int),
    "visibility_timeout_s": _visibility_timeout,
    "lease_grace_s": _parse_positive_float,
    "analysis_timeout_s": _parse_positive_float,
    "sqlite_lock_timeout_s": _parse_positive_float,
    "allow_python": _parse_bool,
    "program_memory_mb": _positive(_parse_int),
    "program_file_mb": _positive(_parse_int),
    "program_max_processes": _positive(_parse_int),
    "program_max_open_files": _positive(_parse_int),
    "program_workdir_mb": _positive(_parse_int),
    "program_output_kib": _positive(_parse_int),
    "program_user": lambda _name, raw: raw,
    "program_hidden_paths": lambda _name, raw: raw,
    "log_level": _parse_log_level,
    "log_json": _parse_bool,
    "pin_cpu": _parse_bool,
    "metrics": _parse_bool,
}


def _toml_values(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    section = document.get("hwq", document)
    return {str(key): str(value) for key, value in section.items()}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read HWQ_* variables (and hwq.toml, named by HWQ_CONFIG or in the working folder)."""
    env = os.environ if environ is None else environ
    raw: dict[str, tuple[str, str]] = {}
    config_path = Path(env.get("HWQ_CONFIG", "hwq.toml"))
    if config_path.is_file():
        for key, value in _toml_values(config_path).items():
            raw[key] = (f"{config_path}:{key}", value)
    elif "HWQ_CONFIG" in env:
        raise ConfigError(f"HWQ_CONFIG names {config_path}, which does not exist")
    for spec in fields(Settings):
        variable = f"HWQ_{spec.name.upper()}"
        if variable in env and env[variable] != "":
            raw[spec.name] = (variable, env[variable])
    unknown = sorted(set(raw) - set(_PARSERS))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {config_path}: {', '.join(unknown)}")
    values = {key: _PARSERS[key](source, value) for key, (source, value) in raw.items()}
    return Settings(**values)
