"""The gateway's page leads to the browser console: its link, and `/console`'s redirect to the
API's port on the host the browser used."""

from __future__ import annotations

import http.client
import urllib.request

import pytest

from bench.local_stack import Stack
from hwq.embedded_redis import free_port

pytestmark = pytest.mark.timeout(300)


def _get(port: int, path: str, host: str | None = None) -> http.client.HTTPResponse:
    """One GET, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Host": host} if host else {})
    reply = connection.getresponse()
    reply.read()
    connection.close()
    return reply


def test_the_gateway_page_links_to_the_console_on_the_api_port(stack: Stack) -> None:
    port = free_port()
    stack.extra_env["HWQ_API_PORT"] = str(stack.api_port)
    try:
        stack.spawn("gateway-link", "gateway", "--port", str(port))
    finally:
        del stack.extra_env["HWQ_API_PORT"]
    try:
        stack.wait_for(lambda: _get(port, "/").status == 200, "the gateway")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert b'href="/console"' in page.read()

        reply = _get(port, "/console")
        assert reply.status == 302
        location = reply.headers["Location"]
        assert location == f"http://127.0.0.1:{stack.api_port}/"
        with urllib.request.urlopen(location, timeout=10) as console:
            assert b"<title>hwq console</title>" in console.read()

        # The browser's own host name is kept; a Host header that is no host name is not used.
        named = _get(port, "/console", host=f"lab.example:{port}")
        assert named.headers["Location"] == f"http://lab.example:{stack.api_port}/"
        forged = _get(port, "/console", host="a b")
        assert forged.headers["Location"] == f"http://127.0.0.1:{stack.api_port}/"
        assert _get(port, "/elsewhere").status == 404
    finally:
        stack.stop("gateway-link")
