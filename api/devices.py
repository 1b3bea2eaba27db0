"""The device registry: list, register, read, change or rename, and remove devices."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, url_for

from api.auth import require_role
from api.context import hwq_service
from api.inputs import json_body
from api.openapi import documented
from api.responses import Device, DeviceList
from api.schemas import DeviceCreate, DeviceUpdate

bp = Blueprint("devices", __name__)


@bp.get("/devices")
@documented("List devices", response=DeviceList)
@require_role("viewer")
def list_devices() -> dict[str, Any]:
    """Every registered device."""
    return {"items": hwq_service().list_devices()}


@bp.post("/devices")
@documented("Register a device", body=DeviceCreate, response=Device, status=201, errors=(409,))
@require_role("admin")
def register_device() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Register a device; 409 if the name is taken."""
    spec = json_body(DeviceCreate)
    device = hwq_service().register_device(spec.model_dump(exclude_unset=True))
    return device, 201, {"Location": url_for(".get_device", name=device["name"])}


@bp.get("/devices/<device:name>")
@documented("Read a device", response=Device)
@require_role("viewer")
def get_device(name: str) -> dict[str, Any]:
    """One device."""
    return hwq_service().get_device(name)


@bp.patch("/devices/<device:name>")
@documented("Change or rename a device", body=DeviceUpdate, response=Device, errors=(409,))
@require_role("admin")
def update_device(name: str) -> dict[str, Any]:
    """Change the fields given; 409 while the device has commands queued or in flight."""
    changes = json_body(DeviceUpdate).model_dump(exclude_unset=True)
    return hwq_service().update_device(name, changes)


@bp.delete("/devices/<device:name>")
@documented("Remove a device", status=204, errors=(409,))
@require_role("admin")
def delete_device(name: str) -> tuple[str, int]:
    """Remove a device; 409 while it has commands queued or in flight."""
    hwq_service().delete_device(name)
    return "", 204
