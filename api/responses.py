"""Response shapes, for the OpenAPI document only: the service builds the bodies themselves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas import Codec, Transport
from tasks.lifecycle import State

Presence = Literal["online", "port-missing", "offline", "inactive", "failed"]


class Health(BaseModel):
    """Whether the API can reach what it needs."""

    status: str = Field(description="ok, or degraded when a dependency is down")
    redis: str
    database: str
    version: str
    recorder_pending: int | None = Field(
        description="transitions in Redis not yet copied to the SQL ledger (null: Redis down)"
    )
    recorder_lag_s: float | None = Field(
        description="age in seconds of the oldest transition not yet in the ledger (0: none)"
    )


class Device(BaseModel):
    """A registered device and its live state."""

    name: str
    transport: Transport
    address: str | None
    baudrate: int
    codec: Codec
    options: dict[str, Any]
    host: str | None
    active: bool = Field(description="false once deactivated: no worker, the port released")
    presence: Presence = Field(
        description="online: worker up, port open; port-missing: worker up, port gone; "
        "offline: no worker; inactive: deactivated; failed: its worker crashed too often"
    )
    error: str | None = Field(description="Why the port or the worker failed, if it did")
    online: bool = Field(description='presence == "online"')
    last_seen: str | None
    state: int = Field(ge=0, le=3, description="0 rest, 1 requested, 2 collected, 3 responded")
    queue_depth: int
    created_at: str


class Host(BaseModel):
    """A host agent, the machine beside some hardware that serves its devices."""

    name: str
    online: bool = Field(description="its agent announced itself within the last 30 s")
    last_seen: str | None
    devices: list[str] = Field(description="names of the devices it serves")


class HostList(BaseModel):
    """Every host that announced itself or has devices."""

    items: list[Host]


class Port(BaseModel):
    """A serial port a host agent sees, as pyserial lists it."""

    path: str
    by_id: str | None = Field(description="its /dev/serial/by-id/ link")
    description: str | None
    hwid: str | None
    vid: str | None = Field(description="USB vendor id, 4 lower-case hex digits")
    pid: str | None = Field(description="USB product id, 4 lower-case hex digits")
    serial_number: str | None
    location: str | None
    manufacturer: str | None
    product: str | None
    device: str | None = Field(description="the hwq device bound to this port")


class PortList(BaseModel):
    """The ports one host agent last announced."""

    items: list[Port]


class DeviceList(BaseModel):
    """Every registered device."""

    items: list[Device]


class Command(BaseModel):
    """A command and, once there is one, its reply; times are ISO 8601 UTC."""

    id: str
    device: str
    user: str
    kind: str
    payload: Any
    state: State
    response: dict[str, Any] | None
    analysis: Any
    error: str | None
    attempts: int
    created_at: str
    dispatched_at: str | None
    responded_at: str | None
    finished_at: str | None


class SettledCommand(Command):
    """The command, settled (terminal, or responded and waiting for manual analysis) within
    the submission's `wait`."""


class CommandList(BaseModel):
    """A page of command history, newest first."""

    items: list[Command]
    next_cursor: str | None


class CommandEvent(BaseModel):
    """One transition of a command."""

    state: State
    at: str
    detail: Any


class CommandEventList(BaseModel):
    """A command's transitions, oldest first."""

    items: list[CommandEvent]


class Token(BaseModel):
    """A bearer token as an admin sees it: never its secret or hash."""

    id: int
    name: str
    role: str
    device: str | None = Field(description="The device a device token acts for")
    created_at: str
    last_used_at: str | None = Field(description="Kept to the minute")


class TokenList(BaseModel):
    """Every token, oldest first."""

    items: list[Token]


class FieldProblem(BaseModel):
    """One invalid field."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = Field(None, description="Only for 422")
