"""In-process hosts: the agent's own decision code and machine, over real HTTP, installing nothing.

A `SimHost` is `uptend agent run` minus the I/O of an install. It enrolls and checks in against
a real server with its own credential, feeds every directive to the real `decide.decide`,
drives the real `machine.step` through each update, and reports through the plan's pending
reports and `status.app_status`, so the server sees what it would see from a real agent.

The fakes, named as such: the TUF look-up answers what the directive names (kind `bundle`), and
the installer performs every action the machine orders at once, except that a version listed
in `SimHost.unhealthy` fails its probation and is rolled back.

`SimFleet` runs many of them on one event loop in one process: the rollout tests need hundreds
of hosts, the benches thousands.
"""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from tests.support.keepalive import KeepAlive
from uptend import __version__
from uptend.agent import control, decide, machine, wire
from uptend.agent.status import app_status, report_of
from uptend.agent.wire import AppDirective, CheckIn, Directives
from uptend.protocol import EnrollRequest, EnrollResponse

KINDS = frozenset({"bundle"})


@dataclass
class SimHost:
    """One host's agent: its plans (the journal it would keep) and its last directives."""

    name: str
    credential: str
    unhealthy: set[str] = field(default_factory=set)  # versions whose probation fails here
    # versions whose app passes probation, then crashes (and is restarted) before each
    # check-in after its first: a rollout's soak sees the restart count grow
    crashy: set[str] = field(default_factory=set)
    _crashes: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    plans: dict[str, machine.Plan] = field(default_factory=dict)
    directives: Directives | None = None

    def installed(self, app: str) -> str | None:
        plan = self.plans.get(app)
        return plan.current if plan is not None else None

    def checkin(self) -> tuple[CheckIn, dict[str, int]]:
        """What the host says, and how many reports of each app it says."""
        directed = {d.app for d in self.directives.apps} if self.directives else set()
        statuses, reports, sent = [], [], {}
        for app in sorted(directed | set(self.plans)):
            plan = self.plans.get(app, machine.Plan())
            alive = plan.current is not None  # the fake install keeps what it installed up
            statuses.append(
                app_status(app, plan, plan.current, alive, (None, None, None), "", self._crash(app))
            )
            reports += [r for p in plan.pending if (r := report_of(app, p)) is not None]
            sent[app] = len(plan.pending)
        return CheckIn(agent_version=__version__, apps=statuses, reports=reports), sent

    def _crash(self, app: str) -> int:
        """The app's restart count: grows at each check-in after the first on a crashy version."""
        current = self.installed(app)
        version, seen = self._crashes.get(app, (None, -1))
        seen = seen + 1 if version == current else 0
        self._crashes[app] = (current, seen)
        return seen if current in self.crashy else 0

    def delivered(self, sent: dict[str, int]) -> None:
        for app, count in sent.items():
            if app in self.plans:
                self.plans[app] = decide.delivered(self.plans[app], count)

    def apply(self, directives: Directives, facts: decide.Facts) -> None:
        """Act on the server's answer as the agent's decision code says."""
        self.directives = directives
        for app in directives.retry:
            self.plans[app] = decide.retry(self.plans.get(app, machine.Plan()))
        for directive in directives.apps:
            self.plans[directive.app] = self._follow(directive, facts)

    def _follow(self, directive: AppDirective, facts: decide.Facts) -> machine.Plan:
        plan, move = decide.decide(directive, self.plans.get(directive.app, machine.Plan()), facts)
        if isinstance(move, decide.Look):  # the fake look-up: the signed target is as directed
            found = decide.Found(
                path=move.path or "", app=directive.app, version=move.version, kind="bundle"
            )
            plan, move = decide.decide(directive, plan, replace(facts, lookup=found))
        if isinstance(move, decide.Update):
            plan = self._install(plan, machine.Directed(move.version), facts)
        elif isinstance(move, decide.Activate):  # a staged target whose hold is lifted
            plan = self._install(plan, machine.Cleared(), facts)
        elif isinstance(move, decide.Abandon):
            plan, _ = machine.step(plan, machine.Abandoned())
        return plan

    def _install(
        self, plan: machine.Plan, start: machine.Event, facts: decide.Facts
    ) -> machine.Plan:
        """The fake installer: each ordered action succeeds at once, but for `unhealthy`.

        A held target stops staged (READY: the machine orders nothing more).
        """
        plan, action = machine.step(plan, start)
        while action is not None:
            event: machine.Event
            match action:
                case machine.Fetch():
                    event = machine.Fetched()
                case machine.Stage():
                    event = machine.Staged()
                case machine.SwitchTo():
                    event = machine.Switched()
                case machine.Probe(version=v) if v in self.unhealthy:
                    event = machine.Failed(f"{v} is unhealthy on {self.name} (simulated)")
                case machine.Probe():
                    event = machine.Healthy()
                case machine.Report() as done:
                    return decide.outcome(plan, done, facts)
            plan, action = machine.step(plan, event)
        return plan


class SimFleet:
    """In-process hosts against one real server; at most `concurrency` requests in flight."""

    def __init__(
        self, url: str, enroll_token: str, *, concurrency: int = 16, reports_at_once: bool = False
    ) -> None:
        """`reports_at_once`: a host with a report pending checks in again at once, as the
        agent does (`Runner.report_waits`); off, a round is exactly one check-in per host."""
        self.enroll_token = enroll_token
        self.reports_at_once = reports_at_once
        self.hosts: list[SimHost] = []
        self.checkins = 0
        self._limit = asyncio.Semaphore(concurrency)
        self._rand = random.Random(7)  # noqa: S311 - jitter, not secrets
        self._http = KeepAlive(url, concurrency)  # httpx cost the hosts their poll rate

    async def __aenter__(self) -> "SimFleet":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def enroll(
        self,
        count: int,
        *,
        group: str = "default",
        prefix: str = "sim",
        labels: Callable[[int], list[str]] = lambda _: [],
    ) -> list[SimHost]:
        """Enroll `count` new hosts through the real enrollment API (host i with `labels(i)`)."""

        async def one(i: int, name: str) -> SimHost:
            body = EnrollRequest(token=self.enroll_token, name=name, group=group, labels=labels(i))
            answer = await self._post("/api/v1/enroll", body.model_dump_json(), None)
            return SimHost(name, EnrollResponse.model_validate_json(answer).credential)

        start = len(self.hosts)
        names = [f"{prefix}-{i:05d}" for i in range(start, start + count)]
        new = list(await asyncio.gather(*(one(i, n) for i, n in enumerate(names))))
        self.hosts += new
        return new

    async def round(self, hosts: Iterable[SimHost] | None = None) -> None:
        """Every host (or each of `hosts`) checks in once and acts on the answer."""
        await asyncio.gather(*(self._cycle(h) for h in (self.hosts if hosts is None else hosts)))

    async def rounds_until(self, app: str, version: str, *, limit: int = 10) -> int:
        """Check in until every host runs `version` of `app`; the number of rounds it took."""
        for n in range(1, limit + 1):
            await self.round()
            if self.versions(app) == Counter({version: len(self.hosts)}):
                return n
        raise AssertionError(f"after {limit} rounds: {self.versions(app)}")

    def versions(self, app: str, hosts: Sequence[SimHost] | None = None) -> Counter[str | None]:
        return Counter(h.installed(app) for h in (self.hosts if hosts is None else hosts))

    async def _cycle(self, host: SimHost, *, again: bool = False) -> None:
        body, sent = host.checkin()
        body = control.holding(body, host.directives)  # as the agent says what it holds
        answer = await self._post("/api/v1/checkin", wire.encode(body).decode(), host.credential)
        host.delivered(sent)
        directives = control.kept(wire.decode(Directives, answer), host.directives)
        facts = decide.Facts(
            now=time.time(),
            rand=self._rand.random(),
            poll_s=directives.poll_interval_s,
            kinds=KINDS,
        )
        host.apply(directives, facts)
        if self.reports_at_once and not again and any(p.pending for p in host.plans.values()):
            await self._cycle(host, again=True)

    async def _post(self, path: str, body: str, credential: str | None) -> bytes:
        headers = {"Content-Type": "application/json"}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        async with self._limit:
            status, data = await self._http.post(path, body.encode(), headers)
            self.checkins += path.endswith("/checkin")
        if status != 200:
            text = data[:300].decode(errors="replace")
            raise AssertionError(f"{path} answered {status}: {text}")
        return data
