"""The console's files as a browser gets them, and GET /whoami, over HTTP from outside."""

from __future__ import annotations

import re

from bench.harness_http import http
from bench.local_stack import Stack

IMPORT = re.compile(r"""from\s+"\./([\w.-]+)"|import\s+"\./([\w.-]+)\"""")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)", re.IGNORECASE)
ELSEWHERE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def _origin(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.api_port}"


def test_the_page_is_served_with_a_strict_policy_and_revalidated(stack: Stack) -> None:
    page = http("GET", _origin(stack) + "/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-cache"
    html = str(page.body)
    assert not INLINE_SCRIPT.search(html), "the page runs no inline script"
    assert not ELSEWHERE.search(html), "the page loads nothing from elsewhere"
    again = http("GET", _origin(stack) + "/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status == 304


def test_every_module_the_page_loads_is_served_with_its_media_type(stack: Stack) -> None:
    seen: dict[str, str] = {}
    waiting = ["main.js", "console.css"]
    while waiting:
        name = waiting.pop()
        if name in seen:
            continue
        reply = http("GET", f"{_origin(stack)}/console/{name}")
        assert reply.status == 200, name
        seen[name] = reply.headers["Content-Type"]
        assert reply.headers["Cache-Control"] == "no-cache"
        assert "ETag" in reply.headers
        text = str(reply.body)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f"{name} reaches out"
        waiting += [a or b for a, b in IMPORT.findall(text)]
    assert seen.pop("console.css").startswith("text/css")
    assert len(seen) >= 8
    assert all(kind.startswith("text/javascript") for kind in seen.values()), seen


def test_files_outside_the_console_are_not_served(stack: Stack) -> None:
    for path in ("/console/missing.js", "/console/index.html", "/console/..%2Fconsole.py",
                 "/console/%2E%2E%2F__init__.py", "/console/"):  # fmt: skip
        reply = http("GET", _origin(stack) + path)
        assert reply.status == 404, path
        assert reply.headers["Content-Type"] == "application/problem+json", path


def test_whoami_names_the_token_and_its_role(stack: Stack, device_name: str) -> None:
    assert stack.request("GET", "/whoami").body == {"name": "e2e", "role": "admin", "device": None}
    viewer = stack.hwq("token", "create", "--role", "viewer", "--name", f"v-{device_name}").strip()
    assert stack.request("GET", "/whoami", token=viewer).body == {
        "name": f"v-{device_name}",
        "role": "viewer",
        "device": None,
    }
    refused = http("GET", stack.base + "/whoami")
    assert refused.status == 401
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert http("GET", stack.base + "/whoami", token="hwq_unknown").status == 401
