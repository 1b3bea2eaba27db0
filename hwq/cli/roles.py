"""Role subcommands: each runs one part of hwq in the foreground."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from config import Settings, load_settings
from config.logging import configure_logging
from config.settings import DEFAULT_HOME

if TYPE_CHECKING:
    from worker_host.transport import PortsLister

# Each command imports what its role needs when it runs: a device worker beside the hardware
# never loads the SQL stack, and `hwq --help` stays quick.

SIM_KINDS = ["scpi", "echo", "frame"]
TOKEN_COLUMNS = ("id", "name", "role", "device", "created_at", "last_used_at")
# Threads of the server worker's pool: analysis is short, recording runs beside it.
SERVER_WORKER_THREADS = 4


def _settings(home: str | None = None) -> Settings:
    settings = load_settings()
    if home:
        settings = settings.with_overrides(home=Path(home))
    return settings


def _logging(settings: Settings, **context: object) -> None:
    configure_logging(settings.log_level, settings.log_json, **context)


def _keep_central_on_one_cpu(settings: Settings, role: str) -> None:
    # Before any thread starts: the threads a process starts inherit its CPU.
    if settings.pin_cpu:
        from worker_host.cpu_placement import pin_central_process

        pin_central_process(role)


def _keep_device_on_one_cpu(settings: Settings, name: str) -> None:
    if settings.pin_cpu:
        from worker_host.cpu_placement import pin_device_worker

        pin_device_worker(settings, name)


@click.command()
@click.option("--host", default=None, help="Address to listen on (HWQ_API_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (HWQ_API_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (granian: an asyncio front door, Flask on threads)."""
    from hwq.api_server import ApiServer

    settings = _settings()
    _logging(settings, role="api")
    _keep_central_on_one_cpu(settings, "api")
    ApiServer(settings, host or settings.api_host, port or settings.api_port).run()


@click.command("server-worker")
def server_worker() -> None:
    """Run the server worker: recorder, reaper and analysis (queue hwq.server)."""
    from hwq.startup_objects import freeze_when_worker_ready
    from tasks.celery_app import create_celery
    from tasks.queues import SERVER_QUEUE
    from tasks.server_worker import install_server_duties

    settings = _settings()
    _logging(settings, role="server-worker")
    _keep_central_on_one_cpu(settings, "server-worker")
    app = create_celery(settings)
    install_server_duties(app, settings)
    freeze_when_worker_ready()
    app.worker_main(
        [
            "worker",
            "--queues",
            SERVER_QUEUE,
            "--hostname",
            f"server@{settings.hostname}",
            "--pool",
            "threads",
            "--concurrency",
            str(SERVER_WORKER_THREADS),
            "--without-gossip",
            "--without-mingle",
            "--task-events",
            "--loglevel",
            settings.log_level,
        ]  # fmt: skip
    )


def _require_registered(settings: Settings, name: str) -> None:
    """Refuse to serve a device the registry does not know: no command could ever reach it."""
    import redis

    from tasks.connections import redis_client
    from tasks.live_store import LiveStore

    client = redis_client(settings, max_connections=1)
    try:
        registered = LiveStore(client, settings.key_prefix).device_config(name) is not None
    except redis.RedisError as e:
        raise click.ClickException(
            f"cannot check that device {name!r} is registered: Redis is unreachable ({e})"
        ) from e
    finally:
        client.close()
    if not registered:
        raise click.ClickException(
            f"device {name!r} is not registered: register it first (`hwq devices add {name} "
            "--address PORT` or POST /api/v1/devices), then start its worker"
        )


@click.command("device-worker")
@click.argument("name")
@click.option("--address", default=None, help="pyserial URL or path, overriding the registry.")
@click.option("--baudrate", type=int, default=None, help="Baud rate, overriding the registry.")
@click.option("--codec", type=click.Choice(["line", "raw", "frame"]), default=None)
@click.option(
    "--simulate",
    type=click.Choice(SIM_KINDS),
    default=None,
    help="Start a simulated device of this kind in-process and use it.",
)
@click.option(
    "--ports-dir",
    default=None,
    help="Also look up usb: addresses among the simulated adapters announced here.",
)
def device_worker(
    name: str,
    address: str | None,
    baudrate: int | None,
    codec: str | None,
    simulate: str | None,
    ports_dir: str | None,
) -> None:
    """Run the worker of device NAME (queue hwq.device.NAME)."""
    from hwq.startup_objects import freeze_when_worker_ready
    from tasks.celery_app import create_celery
    from worker_host.device_worker import device_worker_argv, install_device_runtime
    from worker_host.simulator import SimulatedDevice

    settings = _settings()
    _logging(settings, role="device-worker", device=name)
    _require_registered(settings, name)
    _keep_device_on_one_cpu(settings, name)
    if simulate:
        simulator = SimulatedDevice(simulate, name, settings.home / "sim" / f"{name}.log")
        address = simulator.start()
        threading.Thread(target=simulator.serve_forever, name="hwq-sim", daemon=True).start()
    app = create_celery(settings)
    overrides = {"address": address, "baudrate": baudrate, "codec": codec}
    install_device_runtime(app, settings, name, overrides, _ports_lister(ports_dir))
    freeze_when_worker_ready()
    app.worker_main(device_worker_argv(name, settings, settings.log_level))


def _ports_lister(ports_dir: str | None) -> PortsLister | None:
    if ports_dir is None:
        return None
    from worker_host.port_discovery import discover

    folder = Path(ports_dir)
    return lambda: discover(folder).ports


@click.command()
@click.option("--port", type=int, default=None, help="Port (HWQ_FLOWER_PORT).")
@click.option("--address", default="127.0.0.1", show_default=True)
def flower(port: int | None, address: str) -> None:
    """Run Flower, the monitoring dashboard, behind basic auth."""
    from tasks.celery_app import create_celery

    settings = _settings()
    auth = settings.flower_auth
    auth_file = settings.home / "flower.auth"
    if not auth and auth_file.is_file():
        auth = auth_file.read_text().strip()
    if not auth or ":" not in auth:
        raise click.ClickException(
            f"Flower needs a login: set HWQ_FLOWER_AUTH=user:password (or write it to {auth_file})"
        )
    # Passed through the environment so the password never shows in a process listing.
    os.environ["FLOWER_BASIC_AUTH"] = auth
    _logging(settings, role="flower")
    app = create_celery(settings)
    # Flower is a monitor here. Its actions would answer as if they had worked when they could
    # not: a revoke cannot stop a command, which only the API cancels, and a worker told to
    # consume another device's queue refuses. Read-only mode refuses them all with 403.
    app.start(
        ["flower", f"--port={port or settings.flower_port}", f"--address={address}",
         "--read_only=true"]
    )  # fmt: skip


@click.command()
@click.option("--kind", type=click.Choice(SIM_KINDS), default="scpi", show_default=True)
@click.option("--name", default="sim0", show_default=True)
@click.option("--home", default=None, help="hwq home folder; the log goes to HOME/sim/NAME.log.")
@click.option("--link", default=None, help="Keep a symlink to the pseudo-terminal here.")
@click.option("--banner", default=None, help="A line sent each time a host opens the port.")
@click.option(
    "--chatter",
    type=click.FloatRange(min=0.01),
    default=None,
    metavar="S",
    help="Send an unsolicited line every S seconds.",
)
@click.option(
    "--usb",
    default=None,
    metavar="VID:PID:SERIAL",
    help="Behind a simulated USB adapter, announced in --ports-dir; SIGUSR1 unplugs it, "
    "SIGUSR2 plugs it back (on a new pseudo-terminal).",
)
@click.option(
    "--ports-dir",
    default=None,
    help="Where a --usb adapter announces itself (default: HOME/dev/by-id).",
)
def sim(
    kind: str,
    name: str,
    home: str | None,
    link: str | None,
    banner: str | None,
    chatter: float | None,
    usb: str | None,
    ports_dir: str | None,
) -> None:
    """Run a simulated device on a pseudo-terminal and print its path."""
    from worker_host.simulator import run_simulator

    settings = _settings(home)
    log_path = settings.home / "sim" / f"{name}.log"

    def ready(path: str) -> None:
        click.echo(path, nl=True)

    if usb is not None:
        from worker_host.sim_usb import SimulatedUsbAdapter, UsbIdentity, run_usb_adapter

        try:
            identity = UsbIdentity.parse(usb)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--usb") from None
        folder = Path(ports_dir) if ports_dir else settings.home / "dev" / "by-id"
        adapter = SimulatedUsbAdapter(kind, name, identity, folder, log_path)
        run_usb_adapter(adapter, ready)
        return
    run_simulator(kind, name, log_path, Path(link) if link else None, ready, banner, chatter)


@click.command("migrate")
@click.option(
    "--ensure-device",
    "devices",
    multiple=True,
    metavar="NAME[=ADDRESS][@HOST]",
    help="Register this device too if it is missing, served by the host agent of HOST, and "
    "mirror it into Redis for its worker when HWQ_REDIS_URL is set (repeatable); for "
    "deployments.",
)
def migrate_command(devices: tuple[str, ...]) -> None:
    """Create or upgrade the results database schema."""
    from tasks.db import registry
    from tasks.db.engine import make_engine, make_sessions, migrate
    from tasks.db.write_lock import write_session
    from tasks.queues import DEVICE_NAME_PATTERN

    settings = _settings()
    engine = make_engine(settings.sqlalchemy_url, lock_timeout_s=settings.sqlite_lock_timeout_s)
    migrate(engine)
    click.echo("database is at the newest schema")
    ensured = []
    with write_session(make_sessions(engine)) as session:
        for spec in devices:
            host = ""
            if "@" in spec:
                spec, _, host = spec.rpartition("@")
            name, _, address = spec.partition("=")
            if not DEVICE_NAME_PATTERN.match(name):
                raise click.BadParameter(f"{name!r} is not a device name", param_hint="NAME")
            row = registry.get_device(session, name)
            if row is None:
                spec_values = {"name": name, "address": address or None, "host": host or None}
                row = registry.add_device(session, spec_values)
                click.echo(f"registered device {name}")
            ensured.append(registry.device_values(row))
    if ensured and settings.redis_url:
        _mirror_devices(settings, ensured)


def _mirror_devices(settings: Settings, devices: list[dict[str, object]]) -> None:
    """Mirror devices' settings into Redis, where their workers look for them at start."""
    from tasks.connections import redis_client
    from tasks.db.registry import WORKER_FIELDS
    from tasks.live_store import LiveStore

    client = redis_client(settings, max_connections=1)
    try:
        live = LiveStore(client, settings.key_prefix)
        for values in devices:
            live.put_device_config(str(values["name"]), {k: values[k] for k in WORKER_FIELDS})
    finally:
        client.close()


@click.group()
def token() -> None:
    """Manage API tokens."""


def _running_system_settings() -> Settings:
    """Settings for writing to a running system's ledger from any folder.

    Without HWQ_HOME or HWQ_DATABASE_URL, the home is that of the `hwq up` running on this
    machine, if one is; otherwise ./var, as for every other command.
    """
    settings = _settings()
    if os.environ.get("HWQ_HOME") or settings.database_url:
        return settings
    from hwq.running_system import running_up

    up = running_up()
    if up is not None and settings.home == Path(DEFAULT_HOME):
        return settings.with_overrides(home=up.home)
    return settings


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "operator", "viewer", "device"]))
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option("--device", default=None, help="The device a device token acts for (required).")
def token_create(role: str, name: str, device: str | None) -> None:
    """Create a token in the running system's database and print it; it is shown this once.

    Needs the database: HWQ_HOME or HWQ_DATABASE_URL, or a `hwq up` running on this machine.
    """
    from tasks.db.engine import make_sessions, open_existing
    from tasks.db.tokens import check_token_request, create_token
    from tasks.db.write_lock import write_session

    check_token_request(role, device)
    settings = _running_system_settings()
    engine = open_existing(settings.sqlalchemy_url, settings.sqlite_lock_timeout_s)
    with write_session(make_sessions(engine)) as session:
        value = create_token(session, role, name, device)
    engine.dispose()
    click.echo(value)


@token.command("list")
def token_list() -> None:
    """Every token as a table, over the API as an admin (HWQ_URL, HWQ_TOKEN)."""
    from hwq.cli.formatting import format_table
    from hwq.http_client import ApiClient

    items = ApiClient.from_env().list_tokens()
    click.echo(format_table(TOKEN_COLUMNS, ([t.get(c) for c in TOKEN_COLUMNS] for t in items)))


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke token ID at once on every API process, over the API as an admin."""
    from hwq.http_client import ApiClient

    ApiClient.from_env().revoke_token(token_id)
    click.echo(f"revoked token {token_id}")


COMMANDS: list[click.Command] = [
    api,
    server_worker,
    device_worker,
    flower,
    sim,
    migrate_command,
    token,
]
