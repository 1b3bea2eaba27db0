"""The API explorer is Swagger UI, served by the API itself from the package that ships it.

Defect: `/api/v1/docs` was a hand-written page whose JavaScript no test ran. Now it is
Swagger UI, whose files (flask-swagger-ui's) the API serves under `/api/v1/docs/`: the page
loads nothing from elsewhere, needs no token, and its policy lets scripts come from the API
only.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import flask_swagger_ui

from bench.harness_http import http
from bench.local_stack import Stack

SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript"}


class _Links(HTMLParser):
    """Every URL a page loads or links to: its src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _links(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.urls


def _policy(header: str) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def test_the_page_and_every_file_it_loads_come_from_the_api_without_a_token(
    stack: Stack,
) -> None:
    page_url = f"{stack.base}/docs"
    page = http("GET", page_url)

    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "http://" not in page.body and "https://" not in page.body, page.body
    urls = [urljoin(page_url, link) for link in _links(page.body)]
    served = {urlsplit(url).path.rsplit("/", 1)[1] for url in urls}
    assert {"swagger-ui.css", "swagger-ui-bundle.js"} <= served, urls
    for url in urls:
        assert urlsplit(url).netloc == urlsplit(page_url).netloc, url
        assert urlsplit(url).path.startswith("/api/v1/docs/"), url
        asset = http("GET", url)
        name = urlsplit(url).path.rsplit("/", 1)[1]
        assert asset.status == 200, (url, asset.status, asset.body)
        assert asset.headers["Content-Type"].startswith(MEDIA_TYPES[Path(name).suffix]), url
        assert asset.headers["X-Content-Type-Options"] == "nosniff", url
        shipped = SWAGGER_UI_DIST / name
        if shipped.exists():  # Swagger UI's own files, as the package ships them
            assert asset.body == shipped.read_text(encoding="utf-8"), url
        else:  # the script that starts it, on this API's document
            found = re.search(r'url: "([^"]+)"', asset.body)
            assert found and "SwaggerUIBundle(" in asset.body, asset.body
            document = http("GET", urljoin(page_url, found[1]))
            assert document.status == 200 and document.body["openapi"] == "3.1.0"


def test_the_pages_policy_allows_scripts_and_requests_to_this_api_only(stack: Stack) -> None:
    page = http("GET", f"{stack.base}/docs")

    policy = _policy(page.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    assert policy["frame-ancestors"] == "'none'"


def test_only_the_pages_own_files_are_served(stack: Stack) -> None:
    for name in ("index.css", "swagger-ui.js", "..%2Fopenapi.json", "VERSION", "LICENSE"):
        reply = http("GET", f"{stack.base}/docs/{name}")
        assert reply.status == 404, (name, reply.status)
        assert reply.headers["Content-Type"] == "application/problem+json", name


def test_a_browser_revalidates_swagger_ui_instead_of_downloading_it_again(stack: Stack) -> None:
    first = stack.request("GET", "/docs/swagger-ui-bundle.js")
    etag = first.headers["ETag"]

    again = stack.request("GET", "/docs/swagger-ui-bundle.js", headers={"If-None-Match": etag})

    assert first.status == 200 and "no-cache" in first.headers["Cache-Control"]
    assert again.status == 304 and not again.body
