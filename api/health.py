"""GET /health: whether the API can reach Redis and the database; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.context import hwq_service
from api.openapi import documented
from api.responses import Health

bp = Blueprint("health", __name__)


@bp.get("/health")
@documented(
    "Health of the API and its dependencies", response=Health, other_responses={503: Health}
)
def health() -> tuple[dict[str, Any], int]:
    """The health report; 503 when a dependency is down, so load balancers can tell."""
    report = hwq_service().health()
    return report, 200 if report.get("status") == "ok" else 503
