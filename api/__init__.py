"""The HTTP API of hwq: a Flask app that turns requests into calls on the hwq service."""

from __future__ import annotations

from typing import Any

from flask import Flask

from api import (
    commands,
    console,
    devices,
    docs,
    health,
    hosts,
    legacy,
    metrics,
    polling,
    streams,
    tokens,
    whoami,
)
from api.context import EXTENSION_KEY
from api.inputs import DeviceNameConverter, refuse_oversized_body, refuse_unknown_query
from api.problems import register_problem_handlers
from api.request_log import init_request_log
from config import Settings, load_settings
from tasks.service import HwqService

API_PREFIX = "/api/v1"


def create_app(
    test_config: dict[str, Any] | None = None, service: HwqService | None = None
) -> Flask:
    """Build the API app: defaults, then the environment, then `test_config` on top.

    `test_config` may hold `HWQ_SETTINGS` (a Settings) to use instead of the environment's;
    without `service`, the app builds its own HwqService from the settings.
    """
    # No static folder: the docs page serves its few files itself (api/docs.py).
    app = Flask(__name__, static_folder=None)
    # Keep the field order the service chose; sorted keys read worse and gain nothing.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    overrides = test_config or {}
    settings: Settings = overrides.get("HWQ_SETTINGS") or load_settings()
    app.config.from_mapping(HWQ_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.config.from_mapping(overrides)

    app.extensions[EXTENSION_KEY] = service if service is not None else HwqService(settings)

    init_request_log(app)
    app.before_request(refuse_oversized_body)
    app.before_request(refuse_unknown_query)
    register_problem_handlers(app)
    app.url_map.converters["device"] = DeviceNameConverter
    for blueprint in (
        health.bp,
        devices.bp,
        hosts.bp,
        commands.bp,
        tokens.bp,
        docs.bp,
        streams.bp,
        polling.bp,
        legacy.bp,
    ):
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    # At /metrics, where Prometheus looks by default, and under the API's prefix.
    app.register_blueprint(metrics.bp)
    app.register_blueprint(whoami.bp, url_prefix=API_PREFIX)
    # The browser console lives at the root, beside the API it uses.
    app.register_blueprint(console.bp)
    return app


__all__ = ["API_PREFIX", "create_app"]
