"""The `hwq` client commands' view of the API: dicts in and out, every failure an `ApiError`
(a HwqError, which the CLI reports). A thin layer over `hwq.client.Client`, the one HTTP client
of the project."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

from hwq.client import Client, HwqClientError
from hwq.client.base import DEFAULT_TIMEOUT_S
from hwq.client.calls import Answer, Call, segment
from hwq.running_system import client_target
from tasks.errors import ConfigError, HwqError

T = TypeVar("T")


class ApiError(HwqError):
    """The hwq API answered with an error status, or could not be reached at all."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        title: str = "",
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        # The decoded response body, for callers that read more than the problem fields.
        self.body = body


class ApiClient:
    """Calls the routes of the hwq API as the holder of one bearer token."""

    def __init__(self, base_url: str, token: str | None, timeout_s: float = DEFAULT_TIMEOUT_S):
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"HWQ_URL must be an http:// or https:// URL, not {base_url!r}")
        self._client = Client(base_url, token, timeout=timeout_s)
        self.base_url = self._client.base_url
        self._token = token
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        # Never the token: reprs end up in tracebacks and logs.
        return f"ApiClient({self.base_url!r}, token={'set' if self._token else 'unset'})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiClient:
        """A client for HWQ_URL as HWQ_TOKEN, or for the `hwq up` on this machine as its admin.

        ConfigError, naming what to set, when no token can be found (running_system.py).
        """
        url, token = client_target(os.environ if environ is None else environ)
        return cls(url, token)

    # Devices

    def health(self) -> dict[str, Any]:
        """The API's health report; a 503 report is returned, not raised."""
        try:
            return self._call("GET", "/health")
        except ApiError as e:
            if e.status == 503 and isinstance(e.body, dict) and "status" in e.body:
                return e.body
            raise

    def list_devices(self) -> list[dict[str, Any]]:
        """Every registered device."""
        return self._items("/devices")

    def get_device(self, name: str) -> dict[str, Any]:
        """One device."""
        return self._call("GET", f"/devices/{segment(name)}")

    def register_device(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Register a device: `{name, transport, address?, baudrate?, codec?, options?}`."""
        return self._call("POST", "/devices", body=dict(spec))

    def update_device(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a device's settings, or rename it with `{"name": new}`."""
        return self._call("PATCH", f"/devices/{segment(name)}", body=dict(changes))

    def delete_device(self, name: str) -> None:
        """Remove a device from the registry."""
        self._call("DELETE", f"/devices/{segment(name)}")

    def activate_device(self, name: str) -> dict[str, Any]:
        """Open a device's connection (admin)."""
        return self._call("POST", f"/devices/{segment(name)}/activate")

    def deactivate_device(self, name: str) -> dict[str, Any]:
        """Close a device's connection; returns once its port is released, 10 s at most."""
        return self._call("POST", f"/devices/{segment(name)}/deactivate")

    # Hosts

    def list_hosts(self) -> list[dict[str, Any]]:
        """Every host agent, online or not, with its devices."""
        return self._items("/hosts")

    def host_ports(self, host: str) -> list[dict[str, Any]]:
        """The serial ports a host agent sees."""
        return self._items(f"/hosts/{segment(host)}/ports")

    # Commands

    def submit(
        self, device: str, body: Mapping[str, Any], wait: float | None = None
    ) -> dict[str, Any]:
        """Queue a command on a device; returns the new command, or with `wait` (0–60 s) the
        command once it settles or as it stands after that many seconds."""
        path = f"/devices/{segment(device)}/commands"
        query = None if not wait else {"wait": wait}
        return self._call("POST", path, body=dict(body), query=query, hold_s=wait)

    def get_command(self, command_id: str, wait: float | None = None) -> dict[str, Any]:
        """A command; with `wait` (0–60 s), once it settles or after that many seconds."""
        query = None if wait is None else {"wait": f"{wait:g}"}
        path = f"/commands/{segment(command_id)}"
        return self._call("GET", path, query=query, hold_s=wait)

    def list_commands(
        self,
        device: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of command history, newest first: `{items, next_cursor}`."""
        query = {"device": device, "state": state, "limit": limit, "cursor": cursor}
        return self._call("GET", "/commands", query=query)

    def cancel(self, command_id: str) -> dict[str, Any]:
        """Cancel a queued command."""
        return self._call("POST", f"/commands/{segment(command_id)}/cancel")

    def analyse(self, command_id: str, value: object) -> dict[str, Any]:
        """Record a manual analysis of a responded command."""
        path = f"/commands/{segment(command_id)}/analysis"
        return self._call("POST", path, body={"value": value})

    def events(self, command_id: str) -> list[dict[str, Any]]:
        """A command's transitions, oldest first."""
        return self._items(f"/commands/{segment(command_id)}/events")

    # Tokens

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token, without its secret (admin)."""
        return self._items("/tokens")

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token at once on every API process (admin)."""
        self._call("DELETE", f"/tokens/{int(token_id)}")

    # Transport

    def _items(self, path: str) -> list[dict[str, Any]]:
        """The `items` of a listing."""
        return self._send(Call("GET", path, Answer(self.base_url, f"GET {path}").items))

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: Mapping[str, object] | None = None,
        hold_s: float | None = None,
    ) -> dict[str, Any]:
        """The API's answer: a JSON object, or an empty one for an answer without a body."""
        reader = Answer(self.base_url, f"{method} {path}").obj
        return self._send(Call(method, path, reader, body, query, hold_s=hold_s or 0.0))

    def _send(self, call: Call[T]) -> T:
        try:
            return self._client.call(call)
        except HwqClientError as e:
            raise ApiError(
                str(e), status=e.status, title=e.title, detail=e.detail, errors=e.errors,
                body=e.body,
            ) from None  # fmt: skip
