"""The OpenAPI document and Swagger UI to read and try it from a browser; neither needs a token.

Swagger UI's script and stylesheet are the files the flask-swagger-ui package ships, served
from here: the page loads nothing from elsewhere, so it works offline and behind a firewall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Blueprint, Response, current_app, send_file

from api.openapi import build_openapi, documented

bp = Blueprint("docs", __name__)

# Where the package keeps Swagger UI's built files (its own blueprint is not used: it renders
# an inline script, which the policy below would refuse).
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
# The script that starts Swagger UI on the page: its configuration, nothing else.
START_SCRIPT = "hwq-docs.js"
# The files the page loads and their media types; the route serves no other.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    START_SCRIPT: "text/javascript",
}

# Relative URLs: the page is /api/v1/docs, its files are under /api/v1/docs/, the document
# is /api/v1/openapi.json, wherever a proxy mounts the API.
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hwq API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/hwq-docs.js"></script>
</body>
</html>
"""

# With no validatorUrl, Swagger UI would show a badge fetched from the validator's site.
START_JS = """"use strict";
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
});
"""

# Everything the page uses comes from this API; Swagger UI's icons are data: images inside its
# stylesheet, and it styles its own elements as it draws them.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/openapi.json")
@documented("This document", media="application/json")
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    return build_openapi(current_app)


@bp.get("/docs")
@documented("A page to read and try every operation (Swagger UI)", media="text/html")
def docs() -> Response:
    """Swagger UI on this API's document."""
    response = Response(DOCS_PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.get(f"/docs/<any({', '.join(repr(name) for name in ASSETS)}):asset>")
@documented("A script or stylesheet of the docs page", media="text/*")
def docs_asset(asset: str) -> Response:
    """One of the files the docs page loads."""
    if asset == START_SCRIPT:
        response = Response(START_JS, mimetype=ASSETS[asset])
    else:
        # Revalidated on each load (ETag), so an upgraded package is picked up at once.
        response = send_file(SWAGGER_UI_DIST / asset, mimetype=ASSETS[asset])
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
