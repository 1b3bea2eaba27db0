"""Where the `hwq up` running on this machine is, so client commands find it from any folder.

`hwq up` leaves a small record naming its home and its API's URL in the user's runtime
folder (`$XDG_RUNTIME_DIR/hwq/up.json`, else `~/.config/hwq/up.json`) and removes it when
it stops. A client command without HWQ_URL, HWQ_TOKEN or HWQ_HOME reads it; a record whose
process is gone counts as none. Several `hwq up` at once: the last one started is found.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.settings import DEFAULT_HOME
from tasks.errors import ConfigError

# Where `hwq up` serves the API when HWQ_URL says nothing else.
DEFAULT_URL = "http://127.0.0.1:8000"
# `hwq up` writes its admin token here, under its home; a client on the same machine uses it.
ADMIN_TOKEN_FILE = "admin.token"
RECORD_FILE = "up.json"
# Addresses a server listens on that a client must not connect to as they are.
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class RunningUp:
    """A `hwq up` on this machine: its home folder, its API's URL and its process."""

    home: Path
    url: str
    pid: int


def record_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where this user's `hwq up` record lives."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "hwq" / RECORD_FILE
    return Path(env.get("HOME") or Path.home()) / ".config" / "hwq" / RECORD_FILE


def api_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches an API listening on host:port by."""
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write_record(home: Path, url: str, environ: Mapping[str, str] | None = None) -> Path:
    """Record this process as the running `hwq up`, readable by its user only."""
    path = record_path(environ)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{RECORD_FILE}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"home": str(home.resolve()), "url": url, "pid": os.getpid()}, handle)
    partial.replace(path)
    return path


def remove_record(path: Path) -> None:
    """Remove the record if it still names this process (a newer `hwq up` may own it)."""
    found = _read(path)
    if found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def running_up(environ: Mapping[str, str] | None = None) -> RunningUp | None:
    """The `hwq up` running on this machine for this user, if its record says there is one."""
    found = _read(record_path(environ))
    if found is None or not _alive(found.pid):
        return None
    return found


def _read(path: Path) -> RunningUp | None:
    try:
        document = json.loads(path.read_text())
        return RunningUp(Path(document["home"]), str(document["url"]), int(document["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the number: not ours
        return False
    return True


def read_admin_token(home: Path) -> str | None:
    """The admin token `hwq up` left in `home`, if there is one."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return (home / ADMIN_TOKEN_FILE).read_text().strip() or None
    return None


def client_target(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The API URL and bearer token a client command uses; ConfigError if there is no token.

    HWQ_URL and HWQ_TOKEN win. Without a token: the admin token in HWQ_HOME, else the one of
    the `hwq up` running on this machine (when HWQ_URL is unset or names it), else the one
    in ./var, where `hwq up` keeps it when run from the project folder.
    """
    env = os.environ if environ is None else environ
    url, token = env.get("HWQ_URL") or None, env.get("HWQ_TOKEN") or None
    if token is not None:
        return url or DEFAULT_URL, token
    up = running_up(env)
    if env.get("HWQ_HOME"):
        home = Path(env["HWQ_HOME"])
        ours = up is not None and up.home == home.resolve()
        token = read_admin_token(home)
        if token is None:
            raise ConfigError(
                f"no token: HWQ_TOKEN is unset and HWQ_HOME has no {ADMIN_TOKEN_FILE} "
                f"({home / ADMIN_TOKEN_FILE}); is HWQ_HOME the folder `hwq up` runs in?"
            )
        return url or (up.url if up is not None and ours else DEFAULT_URL), token
    if up is not None and url in (None, up.url):
        token = read_admin_token(up.home)
        if token is not None:
            return up.url, token
    token = read_admin_token(Path(DEFAULT_HOME))
    if token is not None:
        return url or DEFAULT_URL, token
    if up is not None:
        why = f"HWQ_URL names {url}, not the `hwq up` running here ({up.url})"
    else:
        why = (
            "no `hwq up` is running on this machine for this user, "
            f"and ./var has no {ADMIN_TOKEN_FILE}"
        )
    raise ConfigError(
        "no token: set HWQ_TOKEN (and HWQ_URL, where the API runs), or HWQ_HOME to the "
        f"folder of a running `hwq up`; {why}"
    )
