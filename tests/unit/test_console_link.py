"""Where the gateway's `/console` leads: the API's port, on the host name the browser used."""

from __future__ import annotations

import pytest

from api.gateway.console_link import console_url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"localhost:3000", "http://localhost:8000/"),
        (b"lab-pc.example:3000", "http://lab-pc.example:8000/"),
        (b"lab-pc.example", "http://lab-pc.example:8000/"),
        (b"[::1]:3000", "http://[::1]:8000/"),
        (b"[::1]", "http://[::1]:8000/"),
    ],
)
def test_the_console_is_the_api_port_on_the_same_host(host: bytes, expected: str) -> None:
    assert console_url({"headers": [(b"host", host)], "scheme": "http"}, 8000) == expected


def test_without_a_usable_host_header_it_is_the_address_the_request_came_in_on() -> None:
    scope = {"headers": [(b"host", b"no such<host>")], "scheme": "https",
             "server": ("192.0.2.7", 3000)}  # fmt: skip
    assert console_url(scope, 8443) == "https://192.0.2.7:8443/"
    assert console_url({"headers": [], "scheme": "http"}, 8000) == "http://127.0.0.1:8000/"
