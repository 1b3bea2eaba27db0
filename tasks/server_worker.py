"""The server worker's own duties: recording, reaping and registered analysis."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, bootsteps

from config import Settings
from tasks import definitions
from tasks.analysis import MANUAL
from tasks.analysis_sandbox import AnalyzerPool
from tasks.connections import redis_client
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.outcome_events import ServerOutcomeEvents
from tasks.reaper import Reaper
from tasks.recorder import Recorder

log = logging.getLogger("hwq.server")


# An analysis message delivered this many times without its analysis ever finishing (its
# worker died each time) is poison: the next delivery ends the command instead of running it.
MAX_ANALYSIS_ATTEMPTS = 3
# How long the count of a command's analysis attempts is kept.
ANALYSIS_ATTEMPTS_TTL_S = 24 * 3600


def analysis_attempts_key(key_prefix: str, command_id: str) -> str:
    """The Redis counter of how often a command's analysis has started."""
    return f"{key_prefix}:analysis-attempts:{command_id}"


class AnalysisService:
    """Runs the registered analyzer a responded command asked for: responded → done."""

    def __init__(self, live: LiveStore, analyzers: AnalyzerPool) -> None:
        self.live = live
        self.analyzers = analyzers

    def analyze(self, command_id: str) -> None:
        """Analyse one command; a repeat delivery finds it done already and does nothing."""
        values = self.live.get(command_id)
        if values is None or values["state"] != State.RESPONDED:
            return
        analysis = values.get("analysis") or {}
        if analysis.get("analyzer") in (None, MANUAL):
            return
        context = {"command": command_id, "device": values["device"]}
        attempts_key = analysis_attempts_key(self.live.prefix, command_id)
        detail = f"analysed by {analysis['analyzer']}"
        if self._count_attempt(attempts_key) > MAX_ANALYSIS_ATTEMPTS:
            verdict: Any = {
                "error": f"analysis abandoned: it started {MAX_ANALYSIS_ATTEMPTS} times "
                "and never finished (the server worker stopped during each attempt)"
            }
            detail = f"analysis by {analysis['analyzer']} abandoned"
        else:
            verdict = self.analyzers.verdict(analysis, values.get("response") or {})
        self.live.move(
            command_id,
            State.DONE,
            expected=(State.RESPONDED,),
            detail=detail,
            fields={"analysis": {**analysis, "value": verdict}},
        )
        self.live.redis.delete(attempts_key)
        if isinstance(verdict, dict) and "error" in verdict:
            log.warning("analysis failed", extra={**context, "error": verdict["error"]})
        else:
            log.info("command analysed", extra={**context, "analyzer": analysis["analyzer"]})

    def _count_attempt(self, key: str) -> int:
        pipe = self.live.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, ANALYSIS_ATTEMPTS_TTL_S)
        count, _ = pipe.execute()
        return int(count)


def install_server_duties(app: Celery, settings: Settings) -> None:
    """Add the recorder and reaper threads to a Celery worker and plug in analysis."""
    client = redis_client(settings, max_connections=16)
    live = LiveStore(client, settings.key_prefix)
    engine = make_engine(
        settings.sqlalchemy_url, writes_first=True, lock_timeout_s=settings.sqlite_lock_timeout_s
    )
    migrate(engine)
    sessions = make_sessions(engine)
    analyzers = AnalyzerPool(settings.analysis_timeout_s)
    analysis = AnalysisService(live, analyzers)
    definitions.install("analysis", analysis)

    class ServerLoops(bootsteps.StartStopStep):
        """Starts the recorder and reaper beside the worker's task pool."""

        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.stop_flag = threading.Event()
            self.threads: list[threading.Thread] = []

        def start(self, worker: Any) -> None:
            outcomes = ServerOutcomeEvents(app, worker.hostname)
            recorder = Recorder(live, sessions, consumer=worker.hostname,
                                on_recorded=outcomes.report)  # fmt: skip
            reaper = Reaper(
                live,
                sessions,
                # A row missing from Redis for longer than a lease's grace, twice over, has
                # outlived any submission still between its ledger insert and its create.
                reconcile_grace_s=2 * settings.lease_grace_s,
                on_restored_reply=analysis.analyze,
            )
            for name, loop in (("recorder", recorder.run), ("reaper", reaper.run)):
                thread = threading.Thread(
                    target=loop, args=(self.stop_flag,), name=f"hwq-{name}", daemon=True
                )
                thread.start()
                self.threads.append(thread)
            log.info("recorder and reaper started")

        def stop(self, worker: Any) -> None:
            self.stop_flag.set()
            for thread in self.threads:
                thread.join(timeout=5)
            analyzers.close()

    app.steps["worker"].add(ServerLoops)
