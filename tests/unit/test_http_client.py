"""ApiClient against a canned HTTP server: requests it builds, auth, errors, where the token is."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwq.http_client import ApiClient, ApiError
from tasks.errors import ConfigError, HwqError

from canned_http_server import CannedHttpServer

TOKEN = "s3cret-token"
PROBLEM = "application/problem+json"


@pytest.fixture
def server() -> Iterator[CannedHttpServer]:
    with CannedHttpServer() as canned:
        yield canned


@pytest.fixture
def client(server: CannedHttpServer) -> ApiClient:
    return ApiClient(server.url, TOKEN, timeout_s=5)


def test_requests_go_under_api_v1_with_json_and_the_bearer_token(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("POST", "/api/v1/devices/sim0/commands", 202, {"id": "c1", "state": "queued"})

    command = client.submit("sim0", {"kind": "line", "payload": "*IDN?"})

    assert command == {"id": "c1", "state": "queued"}
    [request] = server.requests
    assert request.body == {"kind": "line", "payload": "*IDN?"}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"


def test_query_parameters_leave_out_what_is_unset(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("GET", "/api/v1/commands", body={"items": [], "next_cursor": None})
    server.reply("GET", "/api/v1/commands/c1", body={"id": "c1"})

    client.list_commands(device="sim0", limit=5)
    client.get_command("c1", wait=1.5)
    client.get_command("c1")

    assert [r.query for r in server.requests] == [
        {"device": "sim0", "limit": "5"},
        {"wait": "1.5"},
        {},
    ]


def test_routes_use_their_methods_and_quote_names(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("PATCH", "/api/v1/devices/sim0", body={"name": "bench"})
    server.reply("DELETE", "/api/v1/devices/bench", 204)
    server.reply("POST", "/api/v1/commands/c1/analysis", body={"state": "done"})
    server.reply("GET", "/api/v1/commands/c1/events", body={"items": [{"state": "queued"}]})

    assert client.update_device("sim0", {"name": "bench"}) == {"name": "bench"}
    client.delete_device("bench")
    client.analyse("c1", {"ok": True})
    assert client.events("c1") == [{"state": "queued"}]
    with pytest.raises(ApiError):
        client.get_device("a/b")

    assert server.requests[2].body == {"value": {"ok": True}}
    assert server.requests[-1].path == "/api/v1/devices/a%2Fb"


def test_no_token_sends_no_authorization(server: CannedHttpServer) -> None:
    server.reply("GET", "/api/v1/health", body={"status": "ok"})

    ApiClient(server.url, None).health()

    assert "authorization" not in server.requests[0].headers


def test_a_problem_becomes_an_api_error_with_its_fields(
    server: CannedHttpServer, client: ApiClient
) -> None:
    problem = {"type": "x", "title": "Not found", "status": 404, "detail": "no device named 'x'"}
    server.reply("GET", "/api/v1/devices/x", 404, problem, content_type=PROBLEM)

    with pytest.raises(ApiError) as caught:
        client.get_device("x")

    error = caught.value
    assert isinstance(error, HwqError)
    assert str(error) == "404 Not found: no device named 'x'"
    assert (error.status, error.title, error.detail) == (404, "Not found", "no device named 'x'")


def test_field_errors_are_kept_and_named_in_the_message(
    server: CannedHttpServer, client: ApiClient
) -> None:
    errors = [{"field": "payload", "message": "must be one line"}]
    problem = {"title": "Invalid field", "detail": "1 field is invalid: payload.", "errors": errors}
    server.reply("POST", "/api/v1/devices/sim0/commands", 422, problem, content_type=PROBLEM)

    with pytest.raises(ApiError) as caught:
        client.submit("sim0", {"kind": "line", "payload": "a\nb"})

    assert caught.value.errors == errors
    assert str(caught.value) == (
        "422 Invalid field: 1 field is invalid: payload. (payload: must be one line)"
    )


def test_an_error_without_json_still_says_its_status(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("GET", "/api/v1/devices", 502, b"Bad Gateway", content_type="text/plain")

    with pytest.raises(ApiError, match=r"^502 Bad Gateway$") as caught:
        client.list_devices()

    assert caught.value.status == 502


def test_json_that_is_not_the_apis_is_refused_naming_the_url(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("GET", "/api/v1/devices/sim0", 200, ["not", "a", "device"])
    server.reply("GET", "/api/v1/devices", 200, {"items": "not a list"})

    for call in (lambda: client.get_device("sim0"), client.list_devices):
        with pytest.raises(ApiError, match="is HWQ_URL the hwq API") as caught:
            call()
        assert caught.value.status == 502


def test_an_unhealthy_report_is_returned_not_raised(
    server: CannedHttpServer, client: ApiClient
) -> None:
    report = {"status": "degraded", "redis": "down", "database": "ok", "version": "0.1.0"}
    server.reply("GET", "/api/v1/health", 503, report)

    assert client.health() == report


def test_a_refused_connection_names_the_url_and_suggests_hwq_up() -> None:
    # A bound socket that does not listen refuses connections: no race for a free port.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(ApiError) as caught:
            ApiClient(url, TOKEN).list_devices()

    message = str(caught.value)
    assert url in message
    assert "not reachable" in message
    assert "hwq up" in message
    assert TOKEN not in message


def test_the_token_stays_out_of_repr_and_error_messages(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("GET", "/api/v1/devices", 401, {"title": "Unauthorized", "detail": "bad token"})

    with pytest.raises(ApiError) as caught:
        client.list_devices()

    assert TOKEN not in repr(client)
    assert TOKEN not in str(caught.value)


def test_base_url_may_end_in_the_api_prefix(server: CannedHttpServer) -> None:
    server.reply("GET", "/api/v1/devices", body={"items": []})

    assert ApiClient(server.url + "/api/v1/", TOKEN).list_devices() == []


def test_a_url_without_http_names_hwq_url() -> None:
    with pytest.raises(ConfigError, match="HWQ_URL"):
        ApiClient.from_env({"HWQ_URL": "localhost:8000"})


def _token_sent(server: CannedHttpServer, environ: dict[str, str]) -> str | None:
    server.reply("GET", "/api/v1/devices", body={"items": []})
    ApiClient.from_env({"HWQ_URL": server.url, **environ}).list_devices()
    return server.requests[-1].headers.get("authorization")


def test_from_env_falls_back_to_the_admin_token_in_hwq_home(
    server: CannedHttpServer, tmp_path: Path
) -> None:
    (tmp_path / "admin.token").write_text("  from-file\n")

    assert _token_sent(server, {"HWQ_HOME": str(tmp_path)}) == "Bearer from-file"
    assert _token_sent(server, {"HWQ_HOME": str(tmp_path), "HWQ_TOKEN": "env"}) == "Bearer env"


def test_from_env_reads_var_admin_token_by_default_and_says_when_there_is_none(
    server: CannedHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    no_hwq_up = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match="no token: set HWQ_TOKEN"):
        _token_sent(server, no_hwq_up)

    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "admin.token").write_text("default-home\n")
    assert _token_sent(server, no_hwq_up) == "Bearer default-home"


def test_from_env_defaults_to_the_local_api() -> None:
    assert ApiClient.from_env({"HWQ_TOKEN": "t"}).base_url == "http://127.0.0.1:8000"


def test_a_reply_that_is_not_json_asks_whether_hwq_url_is_right(
    server: CannedHttpServer, client: ApiClient
) -> None:
    server.reply("GET", "/api/v1/devices", 200, b"<html>hello</html>", content_type="text/html")

    with pytest.raises(ApiError, match="is HWQ_URL the hwq API"):
        client.list_devices()
