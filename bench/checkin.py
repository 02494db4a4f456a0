"""Benchmark: uptend's authenticated check-in beside a FastAPI hello-world, same run.

Usage (from the repo root):

    .venv/bin/python bench/checkin.py [--duration 5] [--rounds 5] [--connections 64]
                                      [--no-postgresql] [--fixed-rate-only]

What it does, in one run (about eight minutes with the defaults):

1. Baselines: a FastAPI `GET /hello` and a FastAPI `POST` of uptend's own `CheckIn` model
   answering a `Directives` (the check-in's shape), each served by the same uvicorn settings
   and the same listening socket (`uptend.cli.server.listening_socket`) as `uptend server run`.
2. Per database (SQLite, and PostgreSQL at $UPTEND_BENCH_PG), three real `uptend server run`
   processes, one per point, all up at once: 2,000 agents and 1 release; 2,000 agents and
   1,000 releases; 20,000 agents and 1,000 releases. Each has one app assigned to group
   `default` and one release published through the admin API; agents are SEEDED WITH SQL
   (agents and agent_apps rows, as enrollment and a first check-in would leave them), as are
   the 999 older releases (rows only, not signed: a check-in never reads TUF). Every agent
   checks in once first (the steady state, not a cold one). Idle check-ins send the state
   recorded and the generation of their directives, as the agent does; every run rotates
   over all agents' credentials, so each request authenticates a different agent.
3. Rounds: `--rounds` times, the hello-world and the six points are measured one after the
   other, in an order rotated by one each round, each after the last one's batched
   last-seen write has landed (so no point pays for another's). Comparable points are so
   measured minutes apart at most, under the same drift of other work on the machine; each
   target is judged on the MEDIAN over rounds of the ratio of two points of the same round.
4. Load: `wrk` (1 thread, 64 connections, a Lua script rotating the credentials), pinned to
   CPU 1 while the servers are pinned to CPU 0 (taskset). Writes per check-in are COUNTED
   from the server's statement counters (GET /api/v1/server/stats) over the measured window.
5. Then, once: latency at a fixed rate (Debian has no wrk2): an open-loop generator of our
   own (asyncio, 64 kept-alive connections on 127.0.0.1, each request timed from its
   scheduled send time so a stall is not hidden) at 1,667 check-ins/s on SQLite, 20,000
   agents, twice (both must pass); beside it how late the generator itself sent, the
   server's full garbage collections and the load average, and the control: the FastAPI
   pydantic POST of (1) at the same rate, what the framework itself reaches on this machine
   (`--fixed-rate-only` runs just these, in about a minute). And a state change (each
   check-in reports a new reason) at 20,000 agents on each database.

The servers and the seeding are in bench/checkin_setup.py, the load in bench/checkin_load.py.

It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checkin_load import (  # noqa: E402 - after the path that finds them
    FIXED_RATE,
    fixed_rate,
    lua_script,
    warm_up,
    wrk,
)
from bench.checkin_setup import (  # noqa: E402
    APP,
    BASELINE,
    UPTEND,
    Uptend,
    drained,
    idle_body,
    publish_one,
    serving,
    stats,
)
from tests.support.pg import fresh_database  # noqa: E402

PG_ADMIN_URL = os.environ.get("UPTEND_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGETS = {"idle_vs_hello_sqlite": 0.40, "idle_vs_hello_postgresql": 0.30, "max_loss": 0.10}
AMORTISED_TARGET = 0.05
P99_TARGET_MS = 50.0
# (key, label, agents, releases): the points of each database
LAYOUT = (
    ("idle", "idle, 2,000 agents, 1 release", 2000, 1),
    ("releases", "idle, 2,000 agents, 1,000 releases", 2000, 1000),
    ("agents", "idle, 20,000 agents, 1,000 releases", 20000, 1000),
)


def say(msg: str) -> None:
    print(msg, flush=True)


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    rps: float
    p99: float
    writes: float  # per check-in, in the measured window
    flushes: float  # batched last-seen statements per check-in
    checkins: int = 0


def run_point(up: Uptend, url: str, script: Path, label: str, args: argparse.Namespace) -> Point:
    """One wrk run of `script` against `url`; then wait for its last-seen write to land."""
    before = stats(url, up.admin_token)
    rps, p99 = wrk(f"{url}/api/v1/checkin", script, args.duration, args.connections)
    after = stats(url, up.admin_token)
    n = after["checkins"]["total"] - before["checkins"]["total"]
    writes = (after["statements"]["write"] - before["statements"]["write"]) / n
    flushes = (after["statements"]["flush"] - before["statements"]["flush"]) / n
    say(
        f"  {label:<52} {rps:8.0f} req/s  p99 {p99:7.1f} ms  writes/check-in {writes:.3f}"
        f"  (+ last-seen flushes {flushes:.4f})"
    )
    drained(url, up.admin_token)  # the next point, on whichever server, pays for its own
    return Point(label, rps, p99, writes, flushes, n)


def measure(
    up: Uptend, url: str, where: Path, label: str, args: argparse.Namespace, *, change: bool
) -> Point:
    """A point on a fresh server: warm it up (idle) or build a changing body, then run it."""
    body = idle_body(url, up.creds[0])
    if change:
        body = {**body, "apps": [{**body["apps"][0], "reason": "REASON"}]}
    else:  # every agent checks in once first: the steady state, not a cold one
        warm_up(url, up.creds, body)
    return run_point(up, url, lua_script(where, up.creds, body, change=change), label, args)


@dataclass(slots=True)
class Served:
    """One uptend server of the run, ready to be measured again and again."""

    dialect: str
    key: str
    label: str
    up: Uptend
    url: str
    script: Path
    points: list[Point] = field(default_factory=list)

    def measure(self, args: argparse.Namespace) -> None:
        label = f"{self.dialect}: {self.label}"
        self.points.append(run_point(self.up, self.url, self.script, label, args))


def start(
    stack: contextlib.ExitStack, dialect: str, layout: tuple[str, str, int, int], root: Path
) -> Served:
    key, label, agents, releases = layout
    where = root / f"{dialect}-{key}"
    url_db = (
        ""
        if dialect == "sqlite"
        else stack.enter_context(fresh_database(PG_ADMIN_URL, "uptend_bench"))
    )
    up = Uptend(where, url_db)
    up.seed_agents(agents)
    url = stack.enter_context(serving([*UPTEND, "server", "run", str(up.dir), "--port", "0"]))
    publish_one(url, up.admin_token, where)
    if releases > 1:
        up.seed_old_releases(releases - 1)
    body = idle_body(url, up.creds[0])
    warm_up(url, up.creds, body)
    drained(url, up.admin_token)
    say(f"  {dialect}: {label} at {url}")
    return Served(dialect, key, label, up, url, lua_script(root, up.creds, body, change=False))


def rounds(servers: list[Served], hello_url: str, args: argparse.Namespace) -> list[float]:
    """Every point once per round, in an order rotated each round; the hello-world figures."""
    hello: list[float] = []
    order: list[Served | None] = [None, *servers]  # None: the hello-world
    for r in range(args.rounds):
        say(f"\nround {r + 1} of {args.rounds} (loadavg {loadavg()}):")
        shift = r % len(order)
        for item in order[shift:] + order[:shift]:
            if item is None:
                rps, p99 = wrk(f"{hello_url}/hello", None, args.duration, args.connections)
                say(f"  {'GET /hello (FastAPI)':<52} {rps:8.0f} req/s  p99 {p99:7.1f} ms")
                hello.append(rps)
            else:
                item.measure(args)
    return hello


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fixed_rate_runs(served: Served, args: argparse.Namespace) -> list[float]:
    body = idle_body(served.url, served.up.creds[0])
    p99s = []
    for _ in (1, 2):
        before = stats(served.url, served.up.admin_token)["gc"]["full_collections"]
        run = fixed_rate(served.url, served.up.creds, body, args.duration)
        collections = stats(served.url, served.up.admin_token)["gc"]["full_collections"] - before
        p99s.append(run.p99)
        say(
            f"  idle at {FIXED_RATE:.0f} check-ins/s (open loop), 20,000 agents:"
            f" p50 {run.p50:.1f} ms, p99 {run.p99:.1f} ms (target < {P99_TARGET_MS:.0f})"
        )
        say(
            f"    generator sent late by p99 {run.late_p99:.1f} ms; server full GCs"
            f" {collections}; loadavg {loadavg()}"
        )
        drained(served.url, served.up.admin_token)
    return p99s


def control_fixed_rate(hello_url: str, args: argparse.Namespace) -> list[float]:
    """The FastAPI pydantic POST at the same rate: what the framework itself reaches here."""
    body: dict[str, Any] = {"agent_version": "0.1.0", "apps": [{"app": APP, "version": "1.0"}]}
    p99s = []
    for _ in (1, 2):
        run = fixed_rate(hello_url, ["utc_x"], body, args.duration)
        p99s.append(run.p99)
        say(
            f"  control: FastAPI pydantic POST at {FIXED_RATE:.0f}/s (open loop):"
            f" p50 {run.p50:.1f} ms, p99 {run.p99:.1f} ms; sent late by p99"
            f" {run.late_p99:.1f} ms; loadavg {loadavg()}"
        )
    return p99s


def unchanged_answer(served: Served) -> None:
    cred = served.up.creds[1]
    answer = httpx.post(
        f"{served.url}/api/v1/checkin",
        json=idle_body(served.url, cred),
        headers={"Authorization": f"Bearer {cred}"},
    )
    say(f"  an unchanged answer: {len(answer.content)} bytes of body: {answer.text}")


def paired(a: list[Point] | list[float], b: list[Point] | list[float]) -> list[float]:
    """a/b per round (Points by their requests/s)."""
    rps = [[x.rps if isinstance(x, Point) else x for x in s] for s in (a, b)]
    return [x / y for x, y in zip(rps[0], rps[1], strict=True)]


def shown(values: list[float], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


def report_p99(p99s: list[float], control: list[float]) -> None:
    verdict = "ok" if max(p99s) < P99_TARGET_MS else "MISSED"  # every run must pass
    say(
        f"  sqlite: p99 at {FIXED_RATE:.0f}/s {shown(p99s, '.1f')} ms"
        f" (target < {P99_TARGET_MS:.0f}) {verdict}; the FastAPI pydantic POST at the same"
        f" rate: {shown(control, '.1f')} ms"
    )


def report(by: dict[tuple[str, str], Served], hello: list[float]) -> None:
    say("\nmedians over rounds (requests/s):")
    say(f"  GET /hello: {statistics.median(hello):.0f}  (rounds: {shown(hello, '.0f')})")
    for served in by.values():
        rps = [p.rps for p in served.points]
        say(
            f"  {served.dialect}: {served.label}: {statistics.median(rps):.0f}"
            f"  (rounds: {shown(rps, '.0f')})"
        )
    say("\ntargets (each on the median over rounds of a ratio of two points of one round):")
    for dialect in sorted({d for d, _ in by}, key=lambda d: d != "sqlite"):
        idle, releases, agents = (by[dialect, key].points for key in ("idle", "releases", "agents"))
        target = TARGETS[f"idle_vs_hello_{dialect}"]
        ratios = paired(idle, hello)
        median = statistics.median(ratios)
        say(
            f"  {dialect}: idle/hello {median:.2f} (rounds: {shown(ratios, '.2f')})"
            f" (target >= {target:.2f}) {'ok' if median >= target else 'MISSED'}"
        )
        for what, later, earlier in (
            ("1 -> 1,000 releases", releases, idle),
            ("2k -> 20k agents", agents, releases),
        ):
            losses = [1 - r for r in paired(later, earlier)]
            loss = statistics.median(losses)
            say(
                f"  {dialect}: lost {what}: {loss:+.1%} (rounds: {shown(losses, '+.1%')})"
                f" (target <= 10%) {'ok' if loss <= TARGETS['max_loss'] else 'MISSED'}"
            )
        every = idle + releases + agents
        worst = max(p.writes for p in every)
        say(
            f"  {dialect}: writes per idle check-in {worst:.3f} (worst of {len(every)} runs,"
            f" target 0) {'ok' if worst == 0 else 'MISSED'}"
        )
        total = sum(p.checkins for p in every)
        amortised = sum((p.writes + p.flushes) * p.checkins for p in every) / total
        say(
            f"  {dialect}: amortised statements written per idle check-in, last-seen batches"
            f" included: {amortised:.4f} over {total} check-ins (target <= {AMORTISED_TARGET})"
            f" {'ok' if amortised <= AMORTISED_TARGET else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=5, help="times each point is measured")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument(
        "--fixed-rate-only",
        action="store_true",
        help="only the p99 at 1,667/s on SQLite (20,000 agents) and its FastAPI control",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    began = time.monotonic()
    say(f"loadavg at start: {loadavg()}")
    with (
        tempfile.TemporaryDirectory(prefix="uptend-bench-checkin-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        root = Path(tmp)
        say(f"baselines (FastAPI, same uvicorn settings; {args.connections} connections):")
        baseline = root / "baseline.py"
        baseline.write_text(BASELINE)
        hello_url = stack.enter_context(serving([sys.executable, str(baseline)]))
        body: dict[str, Any] = {"agent_version": "0.1.0", "apps": [{"app": APP, "version": "1.0"}]}
        script = lua_script(root, ["utc_x"], body, change=False)
        rps, p99 = wrk(f"{hello_url}/api/v1/checkin", script, args.duration, args.connections)
        say(f"  {'POST pydantic CheckIn -> Directives':<52} {rps:8.0f} req/s  p99 {p99:7.1f} ms")
        say("\nservers (agents and old releases seeded with SQL, every agent checked in once):")
        if args.fixed_rate_only:
            served = start(stack, "sqlite", LAYOUT[2], root)
            say(f"\nonce (loadavg {loadavg()}):")
            report_p99(fixed_rate_runs(served, args), control_fixed_rate(hello_url, args))
            return
        dialects = ["sqlite"] + ([] if args.no_postgresql else ["postgresql"])
        by = {(d, lay[0]): start(stack, d, lay, root) for d in dialects for lay in LAYOUT}
        hello = rounds(list(by.values()), hello_url, args)
        say(f"\nonce, on the 20,000-agent servers (loadavg {loadavg()}):")
        p99s = fixed_rate_runs(by["sqlite", "agents"], args)
        control = control_fixed_rate(hello_url, args)
        unchanged_answer(by["sqlite", "agents"])
        for dialect in dialects:  # last: every agent's state then differs from the seeded one
            served = by[dialect, "agents"]
            label = f"{dialect}: state change, 20,000 agents, 1,000 releases"
            measure(served.up, served.url, root, label, args, change=True)
        report(by, hello)
        report_p99(p99s, control)
    say(f"\nloadavg at end: {loadavg()}; the run took {(time.monotonic() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()
