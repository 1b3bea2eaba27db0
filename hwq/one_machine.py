"""The whole system on one machine, in the foreground: what `hwq up` runs."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx

from config import Settings, load_settings
from config.logging import configure_logging
from config.settings import masked_url
from hwq.client import Client, HwqClientError
from hwq.embedded_redis import EmbeddedRedis
from hwq.launcher import Supervisor
from hwq.running_system import api_url, remove_record, write_record
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.db.tokens import create_token, find_principal
from tasks.db.write_lock import write_session
from tasks.errors import Conflict, ServiceUnavailable
from tasks.service import HwqService

# How long the stack gets to answer its health check before `hwq up` gives up.
READY_TIMEOUT_S = 90.0
# How long a simulator gets to create its pseudo-terminal link.
SIM_READY_TIMEOUT_S = 15.0
# How long one readiness probe may take.
PROBE_TIMEOUT_S = 2.0
FLOWER_USER = "admin"


def _keep_home_private(home: Path) -> None:
    """Make the home the user's alone, and everything `hwq up` and its children create in it.

    The umask reaches every child (API, workers, simulators, the embedded Redis and its
    append-only file), so the database, its lock, tokens, logs and `flower.auth` are 0600
    and folders 0700 without each part having to remember.
    """
    os.umask(0o077)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)


def _secret_file(path: Path, make: object) -> str:
    """Read a one-line secret, or write a new one readable by the owner only."""
    if path.is_file():
        return path.read_text().strip()
    value = make() if callable(make) else str(make)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(value)


def _admin_token(settings: Settings) -> str:
    engine = make_engine(settings.sqlalchemy_url, lock_timeout_s=settings.sqlite_lock_timeout_s)
    migrate(engine)
    sessions = make_sessions(engine)
    token_file = settings.home / "admin.token"
    if token_file.is_file():
        existing = token_file.read_text().strip()
        with sessions() as session:
            principal = find_principal(session, existing)
        if principal is not None and principal.role == "admin":
            engine.dispose()
            return existing
    with write_session(sessions) as session:
        token = create_token(session, "admin", "hwq-up-admin")
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    engine.dispose()
    return token


def _register_sims(settings: Settings, count: int) -> list[str]:
    service = HwqService(settings)
    names = []
    for index in range(count):
        name = f"sim{index}"
        address = str((settings.home / "dev" / name).resolve())
        spec = {"name": name, "transport": "serial", "address": address, "codec": "line"}
        try:
            service.register_device({**spec, "host": settings.hostname})
        except Conflict:
            current = service.get_device(name)
            if current["address"] != address:
                service.update_device(name, {"address": address})
        names.append(name)
    service.engine.dispose()
    return names


def _wait_until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise ServiceUnavailable(f"{what} did not come up within {timeout_s:.0f} s")


def _listening(port: int) -> bool:
    """Whether something answers HTTP on the port (any status: Flower answers 401).

    httpx, the transport under `hwq.client`: the gateway and Flower are not the hwq API, so
    the client's routes do not reach them.
    """
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True


def _api_healthy(port: int) -> bool:
    """Whether the API answers its health report with 200 (a 503 report raises Unavailable)."""
    try:
        with Client(f"http://127.0.0.1:{port}", None, timeout=PROBE_TIMEOUT_S) as client:
            client.health()
    except HwqClientError:
        return False
    return True


def run_up(
    sims: int,
    port: int | None,
    flower_port: int | None,
    home: str | None,
    say: Callable[[str], None],
    gateway_port: int | None = None,
) -> None:
    """Run the whole system on this machine until SIGINT or SIGTERM; then stop all of it."""
    settings = load_settings()
    settings = settings.with_overrides(
        home=Path(home or settings.home).resolve(),
        api_port=port or settings.api_port,
        flower_port=flower_port or settings.flower_port,
        gateway_port=gateway_port or settings.gateway_port,
    )
    configure_logging(settings.log_level, settings.log_json, role="up")
    _keep_home_private(settings.home)
    supervisor = Supervisor(settings.home / "logs", say)
    redis_server: EmbeddedRedis | None = None
    record: Path | None = None
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if not settings.redis_url:
            redis_server = EmbeddedRedis(settings.home / "redis")
            settings = settings.with_overrides(redis_url=redis_server.start())
        token = _admin_token(settings)
        flower_auth = _secret_file(
            settings.home / "flower.auth", lambda: f"{FLOWER_USER}:{secrets.token_urlsafe(12)}"
        )
        env = {
            **os.environ,
            "HWQ_HOME": str(settings.home),
            "HWQ_REDIS_URL": settings.broker_url,
            "HWQ_HOSTNAME": settings.hostname,
            # The gateway's page links to the console on the API's port.
            "HWQ_API_PORT": str(settings.api_port),
        }
        server_env = {**env, "HWQ_DATABASE_URL": settings.sqlalchemy_url}
        # Machines beside hardware hold only the broker URL, never database credentials.
        device_env = {k: v for k, v in env.items() if k != "HWQ_DATABASE_URL"}
        names = _register_sims(settings, sims)
        for name in names:
            link = settings.home / "dev" / name
            link.unlink(missing_ok=True)
            supervisor.start(
                f"sim-{name}",
                ["sim", "--kind", "scpi", "--name", name, "--home", str(settings.home),
                 "--link", str(link)],
                device_env,
            )  # fmt: skip
            _wait_until(link.exists, SIM_READY_TIMEOUT_S, f"simulator {name}")
        supervisor.start("server-worker", ["server-worker"], server_env)
        # One host agent serves the sims and every device registered later for this machine.
        ports_dir = settings.home / "dev" / "by-id"
        supervisor.start(
            "host",
            ["host", "--name", settings.hostname, "--ports-dir", str(ports_dir)],
            {**device_env, "HWQ_ALLOW_PYTHON": "true"},
        )
        supervisor.start(
            "api",
            ["api", "--host", settings.api_host, "--port", str(settings.api_port)],
            server_env,
        )
        supervisor.start(
            "flower",
            ["flower", "--port", str(settings.flower_port), "--address", settings.api_host],
            {**env, "HWQ_FLOWER_AUTH": flower_auth},
        )
        supervisor.start(
            "gateway",
            ["gateway", "--host", settings.api_host, "--port", str(settings.gateway_port)],
            # Its page's console link leads to this API.
            {**server_env, "HWQ_API_PORT": str(settings.api_port)},
        )
        _wait_until(lambda: stopping or _api_healthy(settings.api_port), READY_TIMEOUT_S, "API")
        _wait_until(
            lambda: stopping or _listening(settings.gateway_port), READY_TIMEOUT_S, "gateway"
        )
        # Flower records only events it sees, so the banner waits until it listens.
        _wait_until(lambda: stopping or _listening(settings.flower_port), READY_TIMEOUT_S, "Flower")
        if not stopping:
            record = write_record(settings.home, api_url(settings.api_host, settings.api_port))
            _banner(settings, token, flower_auth, names, say)
        while not stopping:
            supervisor.check()
            time.sleep(0.5)
    finally:
        say("stopping hwq…")
        if record is not None:
            remove_record(record)
        supervisor.stop_all()
        if redis_server is not None:
            redis_server.stop()
        say("stopped")


def _banner(
    settings: Settings, token: str, flower_auth: str, names: list[str], say: Callable[[str], None]
) -> None:
    host = settings.api_host
    lines = [
        "hwq is up.",
        f"  API:      http://{host}:{settings.api_port}/api/v1  (docs: /api/v1/docs)",
        f"  Console:  http://{host}:{settings.api_port}/  (sign in with the admin token)",
        f"  Flower:   http://{host}:{settings.flower_port}  login {flower_auth}"
        f"  (in {settings.home / 'flower.auth'})",
        f"  Gateway:  http://{host}:{settings.gateway_port}  (Socket.IO; a console at /)",
        f"  Redis:    {masked_url(settings.broker_url)}",
        f"  Database: {masked_url(settings.sqlalchemy_url)}",
        f"  Devices:  {', '.join(names) if names else 'none (use --sim N)'}",
        f"  Logs:     {settings.home / 'logs'}",
        f"  Admin token (also in {settings.home / 'admin.token'}):",
        f"    {token}",
        "Try:",
        f"  export HWQ_URL=http://{host}:{settings.api_port} HWQ_TOKEN=$(cat "
        f"{settings.home / 'admin.token'})",
        *_first_steps(names),
        "Press Ctrl-C to stop everything.",
    ]
    say("\n".join(lines))


def _first_steps(names: list[str]) -> list[str]:
    """What to try first: a simulated device's name, else finding a port and adding it."""
    if names:
        return [f"  hwq run {names[0]} '*IDN?'"]
    return [
        "  hwq ports                                    # the serial ports this machine sees",
        "  hwq devices add NAME --address /dev/ttyUSB0  # or usb:VID:PID[:SERIAL] from hwq ports",
    ]
