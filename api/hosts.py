"""Host agents and their serial ports; opening and closing devices' connections (DESIGN §8)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.auth import require_role
from api.context import hwq_service
from api.openapi import documented
from api.responses import Device, HostList, PortList

bp = Blueprint("hosts", __name__)


@bp.get("/hosts")
@documented("List host agents", response=HostList)
@require_role("viewer")
def list_hosts() -> dict[str, Any]:
    """Every host agent, whether it is online, and the devices it serves."""
    return {"items": hwq_service().list_hosts()}


@bp.get("/hosts/<host>/ports")
@documented(
    "List a host's serial ports",
    response=PortList,
    errors=(404,),
    notes="As its agent last announced them (none while it is offline), each with the hwq "
    "device bound to it. 404 for a host that never announced itself and serves no device.",
)
@require_role("viewer")
def host_ports(host: str) -> dict[str, Any]:
    """The serial ports the host's agent last announced, each with the device bound to it;
    empty while the agent is offline; 404 for a host that never announced itself."""
    return {"items": hwq_service().host_ports(host)}


@bp.post("/devices/<device:name>/activate")
@documented(
    "Activate a device",
    response=Device,
    notes="Its host agent starts its worker, which opens the port; `presence` turns online "
    "within seconds. A failed device gets a fresh start. Activating an active device changes "
    "nothing.",
)
@require_role("admin")
def activate_device(name: str) -> dict[str, Any]:
    """Open the device's connection: its host agent starts its worker, which opens the port.
    Activating an active device changes nothing."""
    return hwq_service().activate_device(name)


@bp.post("/devices/<device:name>/deactivate")
@documented(
    "Deactivate a device",
    response=Device,
    notes="Its host agent stops its worker, which releases the port. While that agent runs, "
    "the answer comes once the worker has stopped (10 s at most), so the port is free when it "
    "does. Queued commands stay queued; new ones are still accepted (202). Deactivating an "
    "inactive device changes nothing.",
)
@require_role("admin")
def deactivate_device(name: str) -> dict[str, Any]:
    """Close the device's connection: its host agent stops its worker, which releases the
    port. While the agent runs, the answer comes once the worker has stopped (10 s at most),
    so the port is free when it does. Queued commands stay queued and new ones are still
    accepted. Deactivating an inactive device changes nothing."""
    return hwq_service().deactivate_device(name)
