"""The chaos run: commands submitted while every part of the stack is killed and restarted.

`python -m bench.chaos` starts its own Redis (restartable on one port), an `hwq api`, an
`hwq server-worker`, simulated SCPI devices on ptys each with its own `hwq device-worker`,
then submits a planned mix of commands from several client threads over HTTP while the
main thread SIGKILLs and restarts, at random, a device worker, the server worker, the API
and Redis. Once the faults stop it drains (every accepted command terminal, within a bound),
lets the ledger catch up, and prints lost, duplicated, stuck, mismatched and wrong-answer
counts, which must all be 0. `tests/faults/test_chaos.py` runs a CI-sized version.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from bench.chaos_clients import PlannedCommand, Submitter, plan_commands
from bench.chaos_faults import FAULT_TARGETS, FaultInjector, RestartableRedis
from bench.chaos_verdict import (
    EXAMPLES,
    MUST_BE_ZERO,
    Outcome,
    Verdict,
    judge,
    read_ledger,
    read_live,
    read_received,
    wait_until,
)
from bench.local_stack import Stack, running_stack
from config import load_settings
from tasks.lifecycle import TERMINAL

KEY_PREFIX = "chaos"
# The report's file in the run's folder.
REPORT_NAME = "chaos-report.txt"


@dataclass(frozen=True)
class ChaosConfig:
    """The size of a run: commands, devices, clients, faults and the bounds on each phase."""

    commands: int = 1000
    devices: int = 4
    clients: int = 6
    # Submissions are spread evenly over this long, so they overlap the faults.
    submit_s: float = 60.0
    # At most this many faults, one every fault_gap_s, each process down for down_s.
    faults: int = 16
    fault_gap_s: tuple[float, float] = (1.5, 5.0)
    down_s: tuple[float, float] = (0.2, 2.0)
    targets: tuple[str, ...] = FAULT_TARGETS
    # True: Redis writes an append-only file and a kill loses at most its last second;
    # False: every kill of Redis loses all its data.
    redis_keeps_data: bool = True
    # Leases lapse this long after a command's timeout; small, to keep the drain short.
    lease_grace_s: float = 3.0
    # How long every accepted command gets to end once the faults stop, and the ledger then
    # gets to agree with Redis.
    drain_s: float = 120.0
    settle_s: float = 30.0
    seed: int | None = None


@dataclass
class ChaosResult:
    """What a run did and what it found."""

    config: ChaosConfig
    seed: int
    verdict: Verdict
    faults: list[dict[str, object]]
    unexpected_exits: list[tuple[str, int, str]]
    phases_s: dict[str, float] = field(default_factory=dict)
    drained: bool = False
    settled: bool = False
    details: dict[str, list[str]] = field(default_factory=dict)
    log_errors: dict[str, int] = field(default_factory=dict)

    def summary_line(self) -> str:
        """The figures the run is judged by, on one line."""
        counts = self.verdict.counts
        return " ".join(f"{name}={counts.get(name, 0)}" for name in MUST_BE_ZERO)

    def report(self) -> str:
        """The whole report as text: counts, states, faults, and examples of each failure."""
        lines = [
            f"chaos run: {self.config.commands} commands, {self.config.devices} devices, "
            f"{len(self.faults)} faults, seed {self.seed}, "
            f"redis {'keeps its data (AOF)' if self.config.redis_keeps_data else 'loses data'}",
            f"  {self.summary_line()}",
            f"  other: {_counts_text(self.verdict.counts, exclude=MUST_BE_ZERO)}",
            f"  states: {_counts_text(self.verdict.states)}",
            f"  phases (s): {json.dumps(self.phases_s)}; drained={self.drained} "
            f"settled={self.settled}",
            f"  errors in logs: {json.dumps(self.log_errors)}",
            "  faults: "
            + ", ".join(
                f"{f['at_s']}s {f['target']} down {f['down_s']}s"
                + ("" if f["back"] else " NOT BACK")
                for f in self.faults
            ),
        ]
        for name, code, tail in self.unexpected_exits:
            lines.append(f"  {name} exited on its own with {code}:\n{tail}")
        for name, ids in self.verdict.examples.items():
            lines.append(f"  {name}: {', '.join(ids)}")
        for command_id, text in self.details.items():
            lines.append(f"  {command_id}: " + "; ".join(text))
        return "\n".join(lines)


def _counts_text(counts: dict[str, int], exclude: tuple[str, ...] = ()) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if k not in exclude) or "-"


def _say(text: str) -> None:
    print(f"[chaos] {text}", file=sys.stderr, flush=True)


def run_chaos(config: ChaosConfig, home: Path) -> ChaosResult:
    """One chaos run in `home`: start everything, submit through faults, drain, judge."""
    seed = config.seed if config.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    server = RestartableRedis(home / "redis", keeps_data=config.redis_keeps_data)
    server.start()
    try:
        with running_stack(
            home / "hwq", server.url, KEY_PREFIX, HWQ_LEASE_GRACE_S=str(config.lease_grace_s)
        ) as stack:
            result = _run(config, seed, rng, stack, server)
    finally:
        server.stop()
    # Kept beside the logs and the database, for a run whose test only reports a failure.
    (home / REPORT_NAME).write_text(result.report() + "\n")
    return result


def _run(
    config: ChaosConfig, seed: int, rng: random.Random, stack: Stack, server: RestartableRedis
) -> ChaosResult:
    phases: dict[str, float] = {}
    started = time.monotonic()
    devices = [f"chaos{i}" for i in range(config.devices)]
    for device in devices:
        stack.add_sim_device(device)
    phases["start"] = round(time.monotonic() - started, 1)
    _say(f"stack up in {phases['start']} s; seed {seed}")

    plans = plan_commands(config.commands, devices, rng)
    submitter = Submitter(stack.api_port, stack.admin_token, plans, config.submit_s, config.clients)
    injector = FaultInjector(stack, server, devices, rng, submitter.submitting)
    mark = time.monotonic()
    submitter.start()
    for target in _fault_order(config, rng):
        time.sleep(rng.uniform(*config.fault_gap_s))
        if submitter.done():
            break
        injector.revive_exited()
        fault = injector.inject(target, rng.uniform(*config.down_s))
        _say(f"fault {len(injector.faults)}: {fault.target} down {fault.down_s} s")
    submitter.join()
    phases["submit"] = round(time.monotonic() - mark, 1)
    injector.revive_exited()
    injector.all_back()

    mark = time.monotonic()
    client = redis.Redis.from_url(server.url)
    database_url = load_settings(stack.env()).sqlalchemy_url
    accepted = [command_id for plan in plans for command_id in plan.accepted]
    _say(f"{len(accepted)} accepted; draining")
    probe = StateProbe(client, database_url, devices, accepted)
    drained = wait_until(probe.all_terminal, config.drain_s)
    phases["drain"] = round(time.monotonic() - mark, 1)
    mark = time.monotonic()
    settled = wait_until(probe.ledger_agrees, config.settle_s)
    phases["settle"] = round(time.monotonic() - mark, 1)

    outcome = _gather(stack, client, database_url, devices, plans)
    verdict = judge(outcome)
    result = ChaosResult(
        config=config,
        seed=seed,
        verdict=verdict,
        faults=[asdict(fault) for fault in injector.faults],
        unexpected_exits=injector.unexpected_exits,
        phases_s=phases,
        drained=drained,
        settled=settled,
        details=_details(stack, verdict),
        log_errors=_log_errors(stack),
    )
    client.close()
    return result


def _fault_order(config: ChaosConfig, rng: random.Random) -> Iterator[str]:
    """Targets in rounds, each round every target once in a shuffled order."""
    given = 0
    while given < config.faults:
        round_ = list(config.targets)
        rng.shuffle(round_)
        for target in round_[: config.faults - given]:
            given += 1
            yield target


@dataclass
class StateProbe:
    """Reads the accepted commands' states from Redis and from the ledger."""

    client: redis.Redis
    database_url: str
    devices: list[str]
    ids: list[str]

    def states(self) -> list[tuple[str | None, str | None]] | None:
        """Per command, (live state where Redis holds it, ledger state); None without Redis."""
        try:
            live = read_live(self.client, KEY_PREFIX, self.ids)
        except redis.RedisError:
            return None
        ledger, _ = read_ledger(self.database_url, self.devices)
        return [(live.get(i), str(ledger[i]["state"]) if i in ledger else None) for i in self.ids]

    def all_terminal(self) -> bool:
        """Whether every command has ended, as Redis (or, where it holds none, SQL) says."""
        states = self.states()
        return states is not None and all((live or sql) in TERMINAL for live, sql in states)

    def ledger_agrees(self) -> bool:
        """Whether the ledger shows every command terminal, in the state Redis holds."""
        states = self.states()
        return states is not None and all(
            sql in TERMINAL and live in (None, sql) for live, sql in states
        )


def _gather(
    stack: Stack,
    client: redis.Redis,
    database_url: str,
    devices: list[str],
    plans: list[PlannedCommand],
) -> Outcome:
    ledger, terminal_events = read_ledger(database_url, devices)
    ids = sorted({*ledger, *(i for plan in plans for i in plan.accepted)})
    api = {}
    for command_id in ids:
        reply = stack.request("GET", f"/commands/{command_id}")
        api[command_id] = dict(reply.body) if reply.status == 200 else None
    return Outcome(
        plans=plans,
        ledger=ledger,
        terminal_events=terminal_events,
        live=read_live(client, KEY_PREFIX, ids),
        api=api,
        received=read_received({device: stack.sim_log(device) for device in devices}),
    )


def _details(stack: Stack, verdict: Verdict) -> dict[str, list[str]]:
    """The event logs of the first failing commands of each kind, as the API gives them."""
    details: dict[str, list[str]] = {}
    for name, ids in verdict.examples.items():
        if name in ("never_accepted", "phantom_rows"):
            continue
        for command_id in ids[: max(1, EXAMPLES // 2)]:
            reply = stack.request("GET", f"/commands/{command_id}/events")
            if reply.status == 200:
                details[command_id] = [f"{e['state']} ({e['detail']})" for e in reply.body["items"]]
    return details


def _log_errors(stack: Stack) -> dict[str, int]:
    """How many tracebacks each process's log holds."""
    counts = {}
    for path in sorted((stack.home / "logs").glob("*.log")):
        tracebacks = path.read_text(errors="replace").count("Traceback")
        if tracebacks:
            counts[path.stem] = tracebacks
    return counts


def main() -> None:
    """Run the longer chaos run and print its report; exit 1 unless every count is 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--faults", type=int, default=60)
    parser.add_argument("--submit-s", type=float, default=240.0)
    parser.add_argument(
        "--redis-loses-data",
        action="store_true",
        help="Redis without persistence: every kill of it loses all its data.",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--keep", type=Path, help="Run in this folder and keep it (logs, db).")
    args = parser.parse_args()
    config = ChaosConfig(
        commands=args.commands,
        devices=args.devices,
        faults=args.faults,
        submit_s=args.submit_s,
        redis_keeps_data=not args.redis_loses_data,
        drain_s=240.0,
        seed=args.seed,
    )
    if args.keep:
        result = run_chaos(config, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="hwq-chaos-") as folder:
            result = run_chaos(config, Path(folder))
    print(result.report())
    sys.exit(0 if result.verdict.passed else 1)


if __name__ == "__main__":
    main()
