"""`GET /metrics`: off by default, Prometheus text when on, figures that follow the commands,
and the same figures from a second API process on the same Redis."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.harness_http import http
from bench.local_stack import Stack, running_stack
from hwq import Client
from hwq.embedded_redis import free_port

# How long the recorder may take to count what just finished, on a busy machine.
SETTLE_S = 30.0


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("hwq-metrics"), redis_url, HWQ_METRICS="true") as s:
        yield s


def _start_api(stack: Stack, name: str, metrics: str) -> int:
    """Another API process of the same stack (same Redis, database and prefix)."""
    port = free_port()
    stack.extra_env["HWQ_METRICS"] = metrics
    try:
        stack.spawn(name, "api", "--host", "127.0.0.1", "--port", str(port))
    finally:
        stack.extra_env["HWQ_METRICS"] = "true"
    url = f"http://127.0.0.1:{port}/api/v1/health"
    stack.wait_for(lambda: http("GET", url).status == 200, name)
    return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    reply = http("GET", f"http://127.0.0.1:{port}/metrics")
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = reply.body if isinstance(reply.body, str) else reply.body.decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _finished(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], state: str) -> float:
    return samples[("hwq_commands_finished_total", (("state", state),))]


def test_metrics_follow_the_commands_and_agree_across_api_processes(
    stack: Stack, device_name: str, redis_url: str
) -> None:
    idle = f"{device_name}-idle"
    stack.add_sim_device(device_name)
    stack.add_sim_device(idle, worker=False)
    before = _scrape(stack.api_port)
    done_count = before[("hwq_command_done_seconds_count", ())]

    with Client(stack.base, stack.admin_token) as hwq:
        assert hwq.run(device_name, "*IDN?").state == "done"
        assert hwq.run(device_name, "ECHO hi").state == "done"
        queued = hwq.submit(idle, "*IDN?")
        hwq.cancel(hwq.submit(idle, "*IDN?").id)

    deadline = time.monotonic() + SETTLE_S
    while True:
        after = _scrape(stack.api_port)
        if (
            _finished(after, "done") >= _finished(before, "done") + 2
            and _finished(after, "cancelled") >= _finished(before, "cancelled") + 1
        ):
            break
        assert time.monotonic() < deadline, "the recorder did not count the commands"
        time.sleep(0.5)

    assert _finished(after, "done") == _finished(before, "done") + 2
    assert _finished(after, "cancelled") == _finished(before, "cancelled") + 1
    assert after[("hwq_command_done_seconds_count", ())] == done_count + 2
    assert after[("hwq_command_done_seconds_bucket", (("le", "+Inf"),))] == done_count + 2
    assert (
        after[("hwq_command_done_seconds_sum", ())] > before[("hwq_command_done_seconds_sum", ())]
    )
    assert after[("hwq_device_queue_depth", (("device", idle),))] == 1
    assert after[("hwq_device_queue_depth", (("device", device_name),))] == 0
    assert after[("hwq_device_presence", (("device", device_name), ("presence", "online")))] == 1
    assert after[("hwq_device_presence", (("device", idle), ("presence", "offline")))] == 1
    assert after[("hwq_device_presence", (("device", idle), ("presence", "online")))] == 0
    assert ("hwq_recorder_pending", ()) in after and ("hwq_recorder_lag_seconds", ()) in after

    # The host agent's restart count, where it keeps one, is exposed as it stands.
    client = redis.Redis.from_url(redis_url)
    client.set(f"{stack.key_prefix}:device:{device_name}:restarts", 3)
    client.close()

    # A second API process answers the same figures: they come from Redis, not its memory.
    second = _start_api(stack, "api-second", "true")
    other = _scrape(second)
    restarts = ("hwq_device_worker_restarts_total", (("device", device_name),))
    assert other[restarts] == 3
    for state in ("done", "cancelled"):
        assert _finished(other, state) == _finished(after, state)
    assert other[("hwq_device_queue_depth", (("device", idle),))] == 1
    stack.stop("api-second")
    stack.request("POST", f"/commands/{queued.id}/cancel")


def test_metrics_are_off_unless_asked_for(stack: Stack) -> None:
    port = _start_api(stack, "api-plain", "false")
    try:
        for path in ("/metrics", "/api/v1/metrics"):
            reply = http("GET", f"http://127.0.0.1:{port}{path}")
            assert reply.status == 404, reply.body
            assert "HWQ_METRICS" in reply.body["detail"]
    finally:
        stack.stop("api-plain")
    assert http("GET", f"http://127.0.0.1:{stack.api_port}/api/v1/metrics").status == 200


DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "hwq-dashboard.json"


def _dashboard_queries(node: object) -> Iterator[str]:
    """Every PromQL expression in the dashboard's panels."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def test_the_dashboard_queries_only_metrics_a_scrape_has(stack: Stack, device_name: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(_dashboard_queries(dashboard))
    used = {name for query in queries for name in re.findall(r"\bhwq_[a-z_]+\b", query)}
    assert used, "the dashboard queries no hwq metric"

    device = f"{device_name}-dash"
    stack.add_sim_device(device)
    with Client(stack.base, stack.admin_token) as hwq:
        assert hwq.run(device, "*IDN?").state == "done"
    # The restart counter appears for devices whose host agent counts crashes.
    client = redis.Redis.from_url(stack.redis_url)
    client.set(f"{stack.key_prefix}:device:{device}:restarts", 0)
    client.close()

    scraped = {name for name, _labels in _scrape(stack.api_port)}
    assert used - scraped == set(), f"the dashboard queries metrics no scrape has: {queries}"


def test_the_latency_histogram_is_a_prometheus_histogram(stack: Stack, device_name: str) -> None:
    device = f"{device_name}-hist"
    stack.add_sim_device(device)
    with Client(stack.base, stack.admin_token) as hwq:
        assert hwq.run(device, "*IDN?").state == "done"
    deadline = time.monotonic() + SETTLE_S
    while _scrape(stack.api_port)[("hwq_command_done_seconds_count", ())] < 1:
        assert time.monotonic() < deadline, "the recorder did not count the command"
        time.sleep(0.5)

    body = http("GET", f"http://127.0.0.1:{stack.api_port}/metrics").body
    text = body if isinstance(body, str) else body.decode()
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "hwq_command_done_seconds"
    ]
    assert family.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    bounds = [float(le) for le, _count in buckets]
    counts = [count for _le, count in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    assert counts == sorted(counts), f"buckets are not cumulative: {buckets}"
    by_name = {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")}
    assert by_name["hwq_command_done_seconds_count"] == counts[-1] >= 1
    assert by_name["hwq_command_done_seconds_sum"] > 0

    # A second API process reads the same histogram from Redis.
    second = _start_api(stack, "api-histogram", "true")
    try:
        first, other = _scrape(stack.api_port), _scrape(second)
    finally:
        stack.stop("api-histogram")
    histogram = {k: v for k, v in first.items() if k[0].startswith("hwq_command_done_seconds")}
    assert histogram == {k: other[k] for k in histogram}
