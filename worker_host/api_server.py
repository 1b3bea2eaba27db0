"""Serves the API under gunicorn with threads, so many long-polls can be open at once."""

from __future__ import annotations

import importlib
from typing import Any

from gunicorn.app.base import BaseApplication

from config import Settings

# One process, many threads: a long-poll is a thread blocked on Redis, not a CPU.
API_WORKER_PROCESSES = 1
# A request slower than this is cut off; it must exceed the longest ?wait (60 s).
API_REQUEST_TIMEOUT_S = 120


class ApiServer(BaseApplication):
    """A gunicorn application serving `api.create_app()`."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.bind = f"{host}:{port}"
        super().__init__()

    def load_config(self) -> None:
        """Gunicorn settings from hwq settings."""
        self.cfg.set("bind", self.bind)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("workers", API_WORKER_PROCESSES)
        self.cfg.set("threads", self.settings.api_threads)
        self.cfg.set("timeout", API_REQUEST_TIMEOUT_S)
        self.cfg.set("graceful_timeout", 5)
        self.cfg.set("accesslog", None)
        self.cfg.set("loglevel", self.settings.log_level.lower())

    def load(self) -> Any:
        """Build the Flask app in the worker process."""
        # Imported by name: the api package sits on top and nothing below imports it.
        return importlib.import_module("api").create_app()
