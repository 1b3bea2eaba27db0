"""The agent an HTTP-polling device runs (`hwq poll-device`): it long-polls the API for its
device's next command, runs it (on a serial port, or as a program when allowed) and posts the
reply (DESIGN §10).

Light on purpose, for a single-board computer: the standard library's urllib, plus pyserial
only when it serves a port. It never runs a command twice: the server hands each command out
once (the claim), and a reply whose post fails is posted again, never run again, until the
API takes it (200) or says it is too late or already answered (409).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from hwq.poll_journal import StartedJournal

log = logging.getLogger("hwq.poll_agent")

# How long one poll may be held by the API, and how much longer the agent waits for its answer.
DEFAULT_WAIT_S = 30.0
ANSWER_GRACE_S = 15.0
# Pauses while the API is away or refusing: doubled from the first up to the longest.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
# A post of a reply waits this long for its answer.
POST_TIMEOUT_S = 15.0
# Replies kept in case the same command is handed over again; it is answered, never rerun.
MAX_REMEMBERED_REPLIES = 1000
# Statuses that end a reply's posting for good: taken, or refused for a reason a retry
# cannot change (bad reply, not this device's, unknown or finished command).
FINAL_POST_STATUSES = frozenset({200, 403, 404, 409, 422})
# The reply to a command this agent started before it was restarted, handed to it again.
STARTED_BEFORE_ERROR = (
    "this device started the command before its agent restarted; the outcome is unknown, "
    "so it is not run again"
)
API_PATH = "/api/v1"


class ServerAway(Exception):
    """The API could not be reached, or answered with a server error."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status and decoded JSON body (None when it has none)."""

    status: int
    body: Any


def api_base(url: str) -> str:
    """The API's base URL from what a person gives: the server's root or its /api/v1."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


class ApiConnection:
    """Requests to the API with the device's token, over urllib."""

    def __init__(self, url: str, token: str) -> None:
        self.base = api_base(url)
        self.token = token

    def request(
        self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float
    ) -> Answer:
        """One request; ServerAway when the API is unreachable or fails (5xx)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return Answer(response.status, _json(response.read()))
        except urllib.error.HTTPError as e:
            answer = Answer(e.code, _json(e.read()))
            if e.code >= 500:
                raise ServerAway(f"the API answered {e.code}: {_detail(answer)}") from None
            return answer
        except (OSError, ValueError) as e:  # URLError, refused, reset, timed out
            raise ServerAway(f"the API at {self.base} cannot be reached: {e}") from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _detail(answer: Answer) -> str:
    body = answer.body
    return str(body.get("detail") or body.get("title")) if isinstance(body, dict) else ""


Runner = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class PollAgent:
    """Polls for one device's commands until stopped; see the module's docstring."""

    def __init__(
        self,
        device: str,
        api: ApiConnection,
        run_command: Runner,
        wait_s: float = DEFAULT_WAIT_S,
        journal: StartedJournal | None = None,
    ) -> None:
        """`run_command(command)`: the reply's fields, or None to send none (the command then
        ends timed_out on the server, as a device that did not answer in time). `journal`:
        where started commands are written down, so a restarted agent knows them too."""
        self.device = device
        self.api = api
        self.run_command = run_command
        self.wait_s = wait_s
        self.journal = journal
        self.stop = threading.Event()
        self._backoff_s = BACKOFF_FIRST_S
        self._replies: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._context = {"device": device}
        # True while a poll is waiting for its answer: the only time a stop may cut a request.
        self.polling = False

    def run(self) -> None:
        """Poll, run and answer until `stop` is set."""
        log.info("polling", extra={**self._context, "url": self.api.base})
        while not self.stop.is_set():
            command = self._next()
            if command is not None:
                self._serve(command)
        log.info("stopped", extra=self._context)

    def _pause(self, why: str, **fields: object) -> None:
        """Wait out a server that is away or refusing, longer each time, up to the longest."""
        log.warning(why, extra={**self._context, **fields, "retry_in_s": self._backoff_s})
        self.stop.wait(self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)

    def _next(self) -> dict[str, Any] | None:
        path = f"/devices/{quote(self.device)}/next?wait={self.wait_s:g}"
        self.polling = True
        try:
            answer = self.api.request("GET", path, None, self.wait_s + ANSWER_GRACE_S)
        except ServerAway as e:
            self.polling = False
            self._pause("API away", error=str(e))
            return None
        self.polling = False
        if answer.status == 204:
            self._backoff_s = BACKOFF_FIRST_S
            return None
        if answer.status == 200 and isinstance(answer.body, dict):
            self._backoff_s = BACKOFF_FIRST_S
            return answer.body
        self._pause("poll refused", status=answer.status, error=_detail(answer))
        return None

    def _serve(self, command: dict[str, Any]) -> None:
        command_id = str(command["id"])
        context = {**self._context, "command_id": command_id}
        if command_id in self._replies:
            # Handed over again (it cannot be, the claim is once): answer, never rerun.
            log.warning("command seen before; its reply is posted again", extra=context)
            reply = self._replies[command_id]
        else:
            reply = self._run_once(command, context)
            self._remember(command_id, reply)
        if reply is None:
            log.info("no reply to send; the command times out", extra=context)
            return
        self._post(command_id, reply, context)

    def _run_once(self, command: dict[str, Any], context: dict[str, str]) -> dict[str, Any] | None:
        """Run a command not seen since this agent started, unless its journal shows that an
        earlier run of the agent started it; it is written down before it runs."""
        command_id = context["command_id"]
        if self.journal is not None:
            if command_id in self.journal:
                log.warning("command started before a restart; not run again", extra=context)
                return {"error": STARTED_BEFORE_ERROR}
            try:
                self.journal.record(command_id)
            except OSError as e:
                # Unrecorded, a restart could run it twice: refused rather than risked.
                log.error("journal not written", extra={**context, "error": str(e)})
                return {"error": f"the device cannot record that it started the command: {e}"}
        log.info("running", extra={**context, "kind": command.get("kind")})
        return self.run_command(command)

    def _remember(self, command_id: str, reply: dict[str, Any] | None) -> None:
        self._replies[command_id] = reply
        while len(self._replies) > MAX_REMEMBERED_REPLIES:
            self._replies.popitem(last=False)

    def _post(self, command_id: str, reply: dict[str, Any], context: dict[str, str]) -> None:
        """Post a reply until the API takes it or refuses it for good; never run again."""
        path = f"/commands/{quote(command_id)}/response"
        while True:
            try:
                answer = self.api.request("POST", path, reply, POST_TIMEOUT_S)
            except ServerAway as e:
                if self.stop.is_set():
                    log.error("reply not posted: stopping", extra={**context, "error": str(e)})
                    return
                self._pause("reply not posted yet", command_id=command_id, error=str(e))
                continue
            if answer.status in FINAL_POST_STATUSES:
                self._backoff_s = BACKOFF_FIRST_S
                level = logging.INFO if answer.status == 200 else logging.WARNING
                log.log(level, "reply posted", extra={**context, "status": answer.status,
                                                      "detail": _detail(answer)})  # fmt: skip
                return
            if self.stop.is_set():
                return
            self._pause("reply refused for now", command_id=command_id, status=answer.status)
