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
    assert console_url([(b"host", host)], "http", 8000) == expected


def test_without_a_host_header_it_is_localhost() -> None:
    assert console_url([], "https", 8443) == "https://localhost:8443/"
