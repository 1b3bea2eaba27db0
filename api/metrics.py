"""`GET /metrics`: Prometheus text, read from Redis and the registry at scrape time.

Nothing is counted in the API process itself, so every API process answers the same figures:
queue depth, presence and restarts per device, commands finished by state and the
submit→done histogram (counted by the recorder, tasks/command_metrics.py), and how far the
SQL ledger trails Redis. Off unless HWQ_METRICS=true (404 then).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.context import hwq_service
from api.openapi import documented
from config import Settings
from tasks.command_metrics import read_outcomes
from tasks.errors import NotFound
from tasks.service import HwqService
from tasks.store_health import recorder_lag

bp = Blueprint("metrics", __name__)

# Prometheus's text exposition format, version 0.0.4.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# Every presence a device can have (DESIGN §3); each is a series, 1 for the current one.
PRESENCES = ("online", "port-missing", "offline", "inactive", "failed")


class HwqCollector(Collector):
    """The figures of one scrape, read from the service's stores."""

    def __init__(self, service: HwqService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now."""
        yield from self._devices()
        yield from self._outcomes()
        yield from self._recorder()

    def _devices(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "hwq_device_queue_depth", "Commands queued on the device", labels=["device"]
        )
        state = GaugeMetricFamily(
            "hwq_device_state",
            "0 rest, 1 requested, 2 collected, 3 responded (DESIGN §2)",
            labels=["device"],
        )
        presence = GaugeMetricFamily(
            "hwq_device_presence",
            "1 for the device's current presence, 0 for the others",
            labels=["device", "presence"],
        )
        restarts = CounterMetricFamily(
            "hwq_device_worker_restarts",
            "Times the host agent restarted the device's worker",
            labels=["device"],
        )
        devices = self.service.list_devices()
        restart_counts = self._restarts([d["name"] for d in devices])
        for device in devices:
            name = device["name"]
            depth.add_metric([name], device["queue_depth"])
            state.add_metric([name], device["state"])
            current = _presence(device)
            for value in PRESENCES:
                presence.add_metric([name, value], 1.0 if value == current else 0.0)
            restarted = restart_counts.get(name)
            if restarted is not None:
                restarts.add_metric([name], restarted)
        yield from (depth, state, presence, restarts)

    def _restarts(self, names: list[str]) -> dict[str, float | None]:
        """`P:device:<name>:restarts`, which the host agent keeps, where it exists."""
        live = self.service.live
        pipe = live.redis.pipeline(transaction=False)
        for name in names:
            pipe.get(f"{live.device_config_key(name)}:restarts")
        counts = pipe.execute()
        return {n: None if c is None else float(c) for n, c in zip(names, counts, strict=True)}

    def _outcomes(self) -> Iterator[Metric]:
        finished, done = read_outcomes(self.service.live.redis, self.service.live.prefix)
        counter = CounterMetricFamily(
            "hwq_commands_finished", "Commands that ended, by terminal state", labels=["state"]
        )
        for state, count in finished.items():
            counter.add_metric([state], count)
        yield counter
        yield HistogramMetricFamily(
            "hwq_command_done_seconds",
            "Time from submission to done, for commands that ended done",
            buckets=done.buckets,
            sum_value=done.total,
        )

    def _recorder(self) -> Iterator[Metric]:
        lag = recorder_lag(self.service.live.redis, self.service.live.transitions_key)
        yield GaugeMetricFamily(
            "hwq_recorder_pending", "Transitions in Redis not yet in the SQL ledger", lag.pending
        )
        yield GaugeMetricFamily(
            "hwq_recorder_lag_seconds",
            "Age of the oldest transition not yet in the SQL ledger (0 when none)",
            lag.oldest_s,
        )


def _presence(device: dict[str, Any]) -> str:
    # An API without the presence field (no host agents) knows only whether a worker is up.
    presence = device.get("presence")
    if presence:
        return str(presence)
    return "online" if device.get("online") else "offline"


@bp.get("/metrics")
@bp.get("/api/v1/metrics")
@documented("Prometheus metrics (HWQ_METRICS=true)", media=TEXT_FORMAT, errors=(404,))
def metrics() -> Response:
    """Every metric in Prometheus's text format; 404 unless HWQ_METRICS=true."""
    settings: Settings = current_app.config["HWQ_SETTINGS"]
    if not settings.metrics:
        raise NotFound("metrics are off; set HWQ_METRICS=true to serve them")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HwqCollector(hwq_service()))
    return Response(generate_latest(registry), mimetype=None, content_type=TEXT_FORMAT)
