"""GET /whoami: who the bearer token speaks for, so a client can offer only what its role may do."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel, Field

from api.auth import current_principal, require_role
from api.openapi import documented

bp = Blueprint("whoami", __name__)


class WhoAmI(BaseModel):
    """The token's name, role and (for a device token) device; never its secret."""

    name: str
    role: str = Field(description="admin, operator, viewer or device")
    device: str | None = Field(description="The device a device token acts for")


@bp.get("/whoami")
@documented("Who the token speaks for", response=WhoAmI)
@require_role("viewer")
def whoami() -> dict[str, Any]:
    """The name, role and device of the request's token."""
    principal = current_principal()
    assert principal is not None  # require_role has authenticated the request
    return {"name": principal.name, "role": principal.role, "device": principal.device}
