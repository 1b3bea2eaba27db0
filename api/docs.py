"""The OpenAPI document and a page to try the API from a browser; neither needs a token."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Response, current_app

from api.docs_page import DOCS_PAGE
from api.openapi import build_openapi, documented

bp = Blueprint("docs", __name__)

# The page is self-contained: its one inline script runs by nonce, and it may only talk back
# to this API.
_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/openapi.json")
@documented("This document", media="application/json")
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    return build_openapi(current_app)


@bp.get("/docs")
@documented("A page to read and try every operation", media="text/html")
def docs() -> Response:
    """The interactive API page."""
    nonce = secrets.token_urlsafe(16)
    response = Response(DOCS_PAGE.replace("{{nonce}}", nonce), mimetype="text/html")
    response.headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY.format(nonce=nonce)
    return response
