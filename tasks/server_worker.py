"""The server worker's own duties: recording, reaping and registered analysis."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, bootsteps

from config import Settings
from tasks import definitions
from tasks.analysis import MANUAL, run_analyzer
from tasks.connections import redis_client
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.reaper import Reaper
from tasks.recorder import Recorder

log = logging.getLogger("hwq.server")


class AnalysisService:
    """Runs the registered analyzer a responded command asked for: responded → done."""

    def __init__(self, live: LiveStore) -> None:
        self.live = live

    def analyze(self, command_id: str) -> None:
        """Analyse one command; a repeat delivery finds it done already and does nothing."""
        values = self.live.get(command_id)
        if values is None or values["state"] != State.RESPONDED:
            return
        analysis = values.get("analysis") or {}
        if analysis.get("analyzer") in (None, MANUAL):
            return
        verdict = run_analyzer(analysis, values.get("response") or {})
        self.live.move(
            command_id,
            State.DONE,
            expected=(State.RESPONDED,),
            detail=f"analysed by {analysis['analyzer']}",
            fields={"analysis": {**analysis, "value": verdict}},
        )
        log.info(
            "command analysed",
            extra={
                "command": command_id,
                "device": values["device"],
                "analyzer": analysis["analyzer"],
            },
        )


def install_server_duties(app: Celery, settings: Settings) -> None:
    """Add the recorder and reaper threads to a Celery worker and plug in analysis."""
    client = redis_client(settings, max_connections=16)
    live = LiveStore(client, settings.key_prefix)
    engine = make_engine(settings.sqlalchemy_url, writes_first=True)
    migrate(engine)
    sessions = make_sessions(engine)
    analysis = AnalysisService(live)
    definitions.install("analysis", analysis)

    class ServerLoops(bootsteps.StartStopStep):
        """Starts the recorder and reaper beside the worker's task pool."""

        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.stop_flag = threading.Event()
            self.threads: list[threading.Thread] = []

        def start(self, worker: Any) -> None:
            recorder = Recorder(live, sessions, consumer=worker.hostname)
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

    app.steps["worker"].add(ServerLoops)
