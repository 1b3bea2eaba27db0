"""docker-compose.yml: every hwq service runs a real CLI subcommand with real flags, the trust
boundary holds (no database URL beside the hardware), nothing is published beyond localhost, and
Redis keeps its data."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

# Every subcommand of `hwq` (DESIGN.md §4).
HWQ_SUBCOMMANDS = {
    "up",
    "api",
    "server-worker",
    "device-worker",
    "host",
    "flower",
    "sim",
    "migrate",
    "token",
    "devices",
    "run",
    "commands",
    "gateway",
}
# Roles that run beside the hardware and so may hold the broker URL only.
HARDWARE_SIDE = {"device-worker", "host", "sim"}
# Roles that write the SQL record and so need the database.
DATABASE_SIDE = {"api", "server-worker", "migrate", "gateway"}


def _load() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


COMPOSE = _load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _is_hwq_image(service: dict[str, Any]) -> bool:
    """Built from this repository's Dockerfile (the hwq image), rather than redis or postgres."""
    return "build" in service


HWQ_SERVICES = sorted(name for name, service in SERVICES.items() if _is_hwq_image(service))


def _command(name: str) -> list[str]:
    command = SERVICES[name].get("command")
    assert isinstance(command, list), f"{name}: command must be a list, got {command!r}"
    assert all(isinstance(part, str) for part in command), f"{name}: command parts must be strings"
    return command


def _environment(name: str) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two compose forms it uses."""
    environment = SERVICES[name].get("environment") or {}
    if isinstance(environment, list):
        pairs = (entry.partition("=") for entry in environment)
        return {key: value for key, _, value in pairs}
    return {str(key): str(value) for key, value in environment.items()}


def _flags(command: list[str]) -> list[str]:
    """The long options a command line uses (`--port 8000` and `--port=8000` alike)."""
    return [part.split("=", 1)[0] for part in command if part.startswith("--")]


def _services_running(roles: set[str]) -> list[str]:
    return [name for name in HWQ_SERVICES if _command(name)[0] in roles]


def _cli_environment(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without HWQ_* settings, so a stray value cannot fail --help."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HWQ_")}
    environment["HWQ_HOME"] = str(tmp_path / "home")
    return environment


def test_hwq_services_are_the_deployment_roles() -> None:
    roles = {_command(name)[0] for name in HWQ_SERVICES}
    assert {"migrate", "api", "server-worker", "flower", "device-worker"} <= roles


@pytest.mark.parametrize("name", HWQ_SERVICES)
def test_command_starts_with_an_hwq_subcommand(name: str) -> None:
    command = _command(name)
    assert command, f"{name}: empty command"
    assert command[0] in HWQ_SUBCOMMANDS, f"{name}: {command[0]!r} is not an hwq subcommand"


@pytest.mark.parametrize("name", HWQ_SERVICES)
def test_command_and_its_flags_exist_in_the_cli(name: str, tmp_path: Path) -> None:
    command = _command(name)
    result = subprocess.run(
        [sys.executable, "-m", "hwq.cli", *command, "--help"],
        cwd=REPO_ROOT,
        env=_cli_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"{name}: `hwq {shlex.join(command)} --help` exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    for flag in _flags(command):
        # The whole option, not a prefix of a longer one (--port must not match --port-range).
        pattern = rf"(?<![\w-]){re.escape(flag)}(?![\w-])"
        assert re.search(pattern, result.stdout), (
            f"{name}: `hwq {command[0]} --help` does not list {flag}\n{result.stdout}"
        )


@pytest.mark.parametrize("name", HWQ_SERVICES)
def test_command_line_parses_with_the_cli(name: str) -> None:
    """Parse the whole command line with the real click group, without running it: this catches
    what --help cannot (a value of the wrong type, a choice that does not exist, a missing
    argument)."""
    main = importlib.import_module("hwq.cli").main
    command = _command(name)
    assert isinstance(main, click.Group), "hwq.cli.main must be a click group"
    group_context = main.make_context("hwq", [], resilient_parsing=True)
    subcommand = main.get_command(group_context, command[0])
    assert subcommand is not None, f"{name}: hwq has no subcommand {command[0]!r}"
    try:
        subcommand.make_context(command[0], list(command[1:]), parent=group_context)
    except click.UsageError as e:
        pytest.fail(f"{name}: `hwq {shlex.join(command)}` is rejected: {e.format_message()}")


def test_device_workers_hold_the_broker_url_only() -> None:
    names = _services_running(HARDWARE_SIDE)
    assert names, "no device worker service in docker-compose.yml"
    for name in names:
        environment = _environment(name)
        assert "HWQ_DATABASE_URL" not in environment, f"{name} must not get HWQ_DATABASE_URL"
        assert environment.get("HWQ_REDIS_URL", "").startswith("redis://"), name
        assert "env_file" not in SERVICES[name], f"{name}: an env_file could carry database secrets"


def test_no_database_credentials_outside_the_database_side() -> None:
    for name in HWQ_SERVICES:
        if _command(name)[0] in DATABASE_SIDE:
            url = _environment(name).get("HWQ_DATABASE_URL", "")
            assert url.startswith("postgresql+psycopg://"), f"{name}: HWQ_DATABASE_URL {url!r}"
        else:
            assert "HWQ_DATABASE_URL" not in _environment(name), name


@pytest.mark.parametrize("name", ["api", "flower", "gateway"])
def test_published_ports_bind_localhost(name: str) -> None:
    ports = SERVICES[name].get("ports")
    assert ports, f"{name} publishes no port"
    for port in ports:
        assert isinstance(port, str), f"{name}: write ports as 'host_ip:host:container' strings"
        assert port.startswith("127.0.0.1:"), f"{name}: {port!r} is reachable beyond localhost"


def test_no_service_publishes_beyond_localhost() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port!r} is not localhost-only"


def test_flower_requires_basic_auth() -> None:
    auth = _environment("flower").get("HWQ_FLOWER_AUTH", "")
    # `${VAR:?message}`: compose refuses to start when the variable is unset, so Flower is never
    # served without a password.
    assert re.fullmatch(r"\$\{HWQ_FLOWER_AUTH:\?[^}]*\}", auth), auth


def test_redis_is_durable_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    parts = shlex.split(command) if isinstance(command, str) else [str(p) for p in command]
    assert parts[0] == "redis-server"
    options = " ".join(parts[1:])
    assert "--appendonly yes" in options
    assert "--maxmemory-policy noeviction" in options
    assert any(str(volume).endswith(":/data") for volume in redis.get("volumes", [])), (
        "redis needs a volume at /data to keep its append-only file"
    )


def test_postgres_has_a_healthcheck_and_a_volume() -> None:
    postgres = SERVICES["postgres"]
    assert "pg_isready" in str(postgres["healthcheck"]["test"])
    assert postgres.get("volumes")


def test_services_wait_for_the_migration() -> None:
    migrate = _services_running({"migrate"})
    assert len(migrate) == 1
    assert SERVICES[migrate[0]].get("restart") == "no"
    assert SERVICES[migrate[0]]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in _services_running({"api", "server-worker"}):
        depends_on = SERVICES[name]["depends_on"]
        assert depends_on[migrate[0]]["condition"] == "service_completed_successfully", name
        assert "redis" in depends_on, name


def test_dockerfile_runs_hwq_as_a_non_root_user() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users
    assert re.search(r'^ENTRYPOINT \["hwq"\]$', dockerfile, re.MULTILINE)


def test_the_image_build_copies_every_package_the_wheel_ships() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    with (REPO_ROOT / "pyproject.toml").open("rb") as pyproject:
        include = tomllib.load(pyproject)["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.MULTILINE))
    assert packages <= copied, f"the Dockerfile does not copy {sorted(packages - copied)}"
