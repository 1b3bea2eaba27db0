"""The browser console: a page at `/` and its scripts and stylesheet under `/console/`.

Plain files from `api/static/console/`, no build step. The page talks to the public API only, with
the token the user signs in with; serving it needs no token (it holds no data).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_file

# The docs page's policy fits the console too: everything from this origin, no inline script
# or style, no CDN, no frames. Its SVG plots are built as DOM nodes, which the policy allows.
from api.docs import CONTENT_SECURITY_POLICY
from api.openapi import documented

bp = Blueprint("console", __name__)

CONSOLE_DIR = Path(__file__).resolve().parent / "static" / "console"
PAGE = "index.html"
# Media types by suffix; a file of any other suffix is not served.
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

# Files are small and change with an upgrade: revalidate each load (ETag → 304), never stale.
CACHE_CONTROL = "no-cache"


def _served(path: Path, mimetype: str) -> Response:
    response = send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=None)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
@documented("The browser console", media="text/html")
def page() -> Response:
    """The console's page; it signs in with a token and uses this API."""
    return _served(CONSOLE_DIR / PAGE, "text/html")


@bp.get("/console/<asset>")
@documented("A script, stylesheet or image of the console", media="text/*")
def asset(asset: str) -> Response:
    """One of the console's files."""
    path = CONSOLE_DIR / asset
    mimetype = MEDIA_TYPES.get(path.suffix)
    # `<asset>` cannot hold a slash, so the name stays inside the folder.
    if mimetype is None or not path.is_file():
        abort(404)
    return _served(path, mimetype)
