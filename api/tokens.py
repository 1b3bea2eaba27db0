"""Bearer tokens: list them and revoke one (admin)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.auth import current_principal, require_role
from api.context import hwq_service
from api.openapi import documented
from api.responses import TokenList

bp = Blueprint("tokens", __name__)


@bp.get("/tokens")
@documented("List tokens", response=TokenList)
@require_role("admin")
def list_tokens() -> dict[str, Any]:
    """Every token with its role, device and last use; never a secret."""
    return {"items": hwq_service().list_tokens()}


@bp.delete("/tokens/<int:token_id>")
@documented("Revoke a token", status=204)
@require_role("admin")
def revoke_token(token_id: int) -> tuple[str, int]:
    """Delete a token; every API process refuses it from its next request on."""
    principal = current_principal()
    hwq_service().revoke_token(token_id, by=principal.name if principal else "unknown")
    return "", 204
