"""A small client of hwq's HTTP API v1 (DESIGN §3) over urllib, for the `hwq` client commands."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from hwq.running_system import client_target
from tasks.errors import ConfigError, HwqError

API_PREFIX = "/api/v1"
# Seconds a request may take beyond any long-poll it asks the server to hold.
DEFAULT_TIMEOUT_S = 30.0


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
        self.base_url = base_url.rstrip("/").removesuffix(API_PREFIX)
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
        return self._call("GET", f"/devices/{_segment(name)}")

    def register_device(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Register a device: `{name, transport, address?, baudrate?, codec?, options?}`."""
        return self._call("POST", "/devices", body=dict(spec))

    def update_device(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a device's settings, or rename it with `{"name": new}`."""
        return self._call("PATCH", f"/devices/{_segment(name)}", body=dict(changes))

    def delete_device(self, name: str) -> None:
        """Remove a device from the registry."""
        self._call("DELETE", f"/devices/{_segment(name)}")

    # Commands

    def submit(self, device: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a command on a device; returns the new command."""
        return self._call("POST", f"/devices/{_segment(device)}/commands", body=dict(body))

    def get_command(self, command_id: str, wait: float | None = None) -> dict[str, Any]:
        """A command; with `wait` (0–60 s), once it settles or after that many seconds."""
        query = None if wait is None else {"wait": f"{wait:g}"}
        path = f"/commands/{_segment(command_id)}"
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
        return self._call("POST", f"/commands/{_segment(command_id)}/cancel")

    def analyse(self, command_id: str, value: object) -> dict[str, Any]:
        """Record a manual analysis of a responded command."""
        path = f"/commands/{_segment(command_id)}/analysis"
        return self._call("POST", path, body={"value": value})

    def events(self, command_id: str) -> list[dict[str, Any]]:
        """A command's transitions, oldest first."""
        return self._items(f"/commands/{_segment(command_id)}/events")

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
        items = self._call("GET", path).get("items")
        if not isinstance(items, list):
            raise self._not_the_api(f"GET {path}")
        return items

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
        request = self._request(method, path, body, query)
        # A long-poll legitimately holds the connection for `hold_s` before answering.
        timeout = self.timeout_s + (hold_s or 0)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            with e:
                raise api_error(e.code, e.read()) from None
        except (urllib.error.URLError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise self._unreachable(reason) from None
        except TimeoutError:
            raise ApiError(
                f"the hwq API at {self.base_url} did not answer {method} {path} "
                f"within {timeout:g} s",
                status=504,
                title="Timed out",
            ) from None
        document = self._json(raw, f"{method} {path}")
        if document is None:
            return {}
        if not isinstance(document, dict):
            raise self._not_the_api(f"{method} {path}")
        return document

    def _json(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise self._not_the_api(what) from None

    def _not_the_api(self, what: str) -> ApiError:
        return ApiError(
            f"{self.base_url} answered {what} with something other than the hwq API's JSON; "
            "is HWQ_URL the hwq API?",
            status=502,
            title="Not the hwq API",
        )

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        query: Mapping[str, object] | None,
    ) -> urllib.request.Request:
        url = self.base_url + API_PREFIX + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json", "User-Agent": "hwq-client"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return urllib.request.Request(url, data=data, headers=headers, method=method)

    def _unreachable(self, reason: object) -> ApiError:
        if isinstance(reason, TimeoutError):
            detail = "timed out connecting"
        else:
            detail = str(getattr(reason, "strerror", None) or reason)
        return ApiError(
            f"the hwq API at {self.base_url} is not reachable ({detail}); "
            "start it with `hwq up`, or set HWQ_URL to where it runs",
            status=503,
            title="API unreachable",
            detail=detail,
        )


def _segment(value: str) -> str:
    """One path segment, quoted so a name can never reach another route."""
    return urllib.parse.quote(value, safe="")


def api_error(status: int, raw: bytes) -> ApiError:
    """An error response as ApiError, from its problem+json body when it has one."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = raw.decode(errors="replace").strip()[:200]
        return ApiError(f"{status} {text or 'error'}", status=status, detail=text, body=body)
    title = str(body.get("title") or "Error")
    detail = str(body.get("detail") or "")
    errors = body["errors"] if isinstance(body.get("errors"), list) else []
    message = f"{status} {title}: {detail}" if detail else f"{status} {title}"
    if errors:
        message += " (" + "; ".join(_field_problem(e) for e in errors) + ")"
    return ApiError(message, status=status, title=title, detail=detail, errors=errors, body=body)


def _field_problem(error: object) -> str:
    if isinstance(error, dict) and "field" in error:
        return f"{error['field']}: {error.get('message', 'invalid')}"
    return str(error)
