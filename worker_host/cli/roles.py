"""Role subcommands: each runs one part of hwq in the foreground."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import click

from config import Settings, load_settings
from config.logging import configure_logging

# Each command imports what its role needs when it runs: a device worker beside the hardware
# never loads the SQL stack, and `hwq --help` stays quick.

SIM_KINDS = ["scpi", "echo", "frame"]
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
    if not settings.pin_cpu:
        return
    from tasks.connections import redis_client
    from worker_host.cpu_placement import next_device_turn, pin_device_process

    client = redis_client(settings, max_connections=1)
    try:
        turn = next_device_turn(client, settings.key_prefix, settings.hostname)
    finally:
        client.close()
    pin_device_process(name, turn)


@click.command()
@click.option("--host", default=None, help="Address to listen on (HWQ_API_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (HWQ_API_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (granian: an asyncio front door, Flask on threads)."""
    from worker_host.api_server import ApiServer

    settings = _settings()
    _logging(settings, role="api")
    _keep_central_on_one_cpu(settings, "api")
    ApiServer(settings, host or settings.api_host, port or settings.api_port).run()


@click.command("server-worker")
def server_worker() -> None:
    """Run the server worker: recorder, reaper and analysis (queue hwq.server)."""
    from tasks.celery_app import create_celery
    from tasks.queues import SERVER_QUEUE
    from tasks.server_worker import install_server_duties
    from worker_host.startup_objects import freeze_when_worker_ready

    settings = _settings()
    _logging(settings, role="server-worker")
    _keep_central_on_one_cpu(settings, "server-worker")
    app = create_celery(settings)
    install_server_duties(app, settings)
    freeze_when_worker_ready()
    app.worker_main(
        [
            "worker",
            "--queues", SERVER_QUEUE,
            "--hostname", f"server@{settings.hostname}",
            "--pool", "threads",
            "--concurrency", str(SERVER_WORKER_THREADS),
            "--without-gossip",
            "--without-mingle",
            "--task-events",
            "--loglevel", settings.log_level,
        ]  # fmt: skip
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
def device_worker(
    name: str,
    address: str | None,
    baudrate: int | None,
    codec: str | None,
    simulate: str | None,
) -> None:
    """Run the worker of device NAME (queue hwq.device.NAME)."""
    from tasks.celery_app import create_celery
    from worker_host.device_worker import device_worker_argv, install_device_runtime
    from worker_host.simulator import SimulatedDevice
    from worker_host.startup_objects import freeze_when_worker_ready

    settings = _settings()
    _logging(settings, role="device-worker", device=name)
    _keep_device_on_one_cpu(settings, name)
    if simulate:
        simulator = SimulatedDevice(simulate, name, settings.home / "sim" / f"{name}.log")
        address = simulator.start()
        threading.Thread(target=simulator.serve_forever, name="hwq-sim", daemon=True).start()
    app = create_celery(settings)
    overrides = {"address": address, "baudrate": baudrate, "codec": codec}
    install_device_runtime(app, settings, name, overrides)
    freeze_when_worker_ready()
    app.worker_main(device_worker_argv(name, settings, settings.log_level))


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
            "Flower needs a login: set HWQ_FLOWER_AUTH=user:password "
            f"(or write it to {auth_file})"
        )
    # Passed through the environment so the password never shows in a process listing.
    os.environ["FLOWER_BASIC_AUTH"] = auth
    _logging(settings, role="flower")
    app = create_celery(settings)
    app.start(["flower", f"--port={port or settings.flower_port}", f"--address={address}"])


@click.command()
@click.option("--kind", type=click.Choice(SIM_KINDS), default="scpi", show_default=True)
@click.option("--name", default="sim0", show_default=True)
@click.option("--home", default=None, help="hwq home folder; the log goes to HOME/sim/NAME.log.")
@click.option("--link", default=None, help="Keep a symlink to the pseudo-terminal here.")
def sim(kind: str, name: str, home: str | None, link: str | None) -> None:
    """Run a simulated device on a pseudo-terminal and print its path."""
    from worker_host.simulator import run_simulator

    settings = _settings(home)
    log_path = settings.home / "sim" / f"{name}.log"

    def ready(path: str) -> None:
        click.echo(path, nl=True)

    run_simulator(kind, name, log_path, Path(link) if link else None, ready)


@click.command("migrate")
@click.option(
    "--ensure-device",
    "devices",
    multiple=True,
    metavar="NAME[=ADDRESS]",
    help="Register this device too if it is missing (repeatable); for deployments.",
)
def migrate_command(devices: tuple[str, ...]) -> None:
    """Create or upgrade the results database schema."""
    from tasks.db import registry
    from tasks.db.engine import make_engine, make_sessions, migrate
    from tasks.queues import DEVICE_NAME_PATTERN

    settings = _settings()
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    click.echo("database is at the newest schema")
    with make_sessions(engine)() as session, session.begin():
        for spec in devices:
            name, _, address = spec.partition("=")
            if not DEVICE_NAME_PATTERN.match(name):
                raise click.BadParameter(f"{name!r} is not a device name", param_hint="NAME")
            if registry.get_device(session, name) is None:
                registry.add_device(session, {"name": name, "address": address or None})
                click.echo(f"registered device {name}")


@click.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option(
    "--role", required=True, type=click.Choice(["admin", "operator", "viewer", "device"])
)
@click.option("--name", required=True, help="Who or what the token is for.")
def token_create(role: str, name: str) -> None:
    """Create a token and print it; it is shown this once only."""
    from tasks.db.engine import make_engine, make_sessions, migrate
    from tasks.db.tokens import create_token

    settings = _settings()
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    with make_sessions(engine)() as session, session.begin():
        value = create_token(session, role, name)
    click.echo(value)


COMMANDS: list[click.Command] = [
    api,
    server_worker,
    device_worker,
    flower,
    sim,
    migrate_command,
    token,
]
