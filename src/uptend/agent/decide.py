"""The one place that decides whether an app starts an update: pure, no I/O, no clock.

`decide` maps (directive, plan, the host's facts, now) to the next plan and exactly one
move. The rules, in order: a staged target waits while the directive holds it ("not now":
a maintenance window is shut, installs are frozen) and is activated once it does not, or
abandoned when the directive moves on; a fetch the directive has moved away from is
abandoned; nothing else starts while an update is in progress (a fetch or stage follows the
directive's hold, so it stops at READY); the running version needs nothing; a version that
failed here waits for the operator's retry; a backoff after a fault is waited out; going
down needs an operator pin; then the signed target is looked up (`Look`: the runner gathers
those facts off the loop and asks again) and must describe the directed release, not be
below the app's floor the release key signed on it, be of a kind this agent installs, and
meet the host's preconditions. Holds and the reports they
make are written into the plan, so one atomic journal write records both; the same report
twice in a row is said once (`report`, the only place reports are made).
"""

from dataclasses import dataclass, replace

from uptend.agent.machine import Hold, HoldState, Pending, Phase, Plan, Report, allow_retry
from uptend.agent.wire import AppDirective
from uptend.policy.backoff import retry_delay_s
from uptend.protocol.versions import parse_version

MAX_BACKOFF_S = 300.0
MAX_PENDING = 20  # per app; the oldest are dropped beyond this (an agent offline for months)


@dataclass(frozen=True, slots=True)
class Found:
    """What the signed metadata says about the directed target (parsed as far as its kind)."""

    path: str
    app: str
    version: str
    kind: str
    unmet: str | None = None  # the first unmet precondition of this host
    floor: str | None = None  # the app's floor as the release key signed it on this target


@dataclass(frozen=True, slots=True)
class LookupFailed:
    reason: str
    transient: bool  # the repository could not be reached (else: it does not verify)


@dataclass(frozen=True, slots=True)
class Facts:
    now: float  # wall time, seconds
    rand: float  # 0 <= rand < 1, the backoff's jitter
    poll_s: float
    kinds: frozenset[str]  # install kinds this agent has an installer for
    lookup: Found | LookupFailed | None = None  # None: not looked up yet


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


@dataclass(frozen=True, slots=True)
class Look:
    """Gather the signed target's facts (off the loop), then decide again with them."""

    version: str
    path: str | None  # the signed target's path as the server names it


@dataclass(frozen=True, slots=True)
class Update:
    version: str


@dataclass(frozen=True, slots=True)
class Held:
    reason: str
    until: float  # 0: judged again at the next poll


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class Abandon:
    """Stop the fetch in progress (or drop a staged target): the directive moved on."""


@dataclass(frozen=True, slots=True)
class Activate:
    """Activate the staged target: the directive no longer holds it."""


Move = Nothing | Look | Update | Held | Refused | Abandon | Activate


def decide(directive: AppDirective, plan: Plan, facts: Facts) -> tuple[Plan, Move]:
    """The next plan and the one move that follows from the directive."""
    version = directive.version
    waiting = f"deferred: {directive.reason or directive.hold}" if directive.hold else ""
    if plan.phase is Phase.READY:
        if version is None or version != plan.target:
            return plan, Abandon()
        if not waiting:
            return plan, Activate()
        plan = report(plan, "deferred", version, waiting.removeprefix("deferred: "), at=facts.now)
        return _waiting(plan, waiting), Held(waiting, 0.0)
    if plan.phase is Phase.FETCHING and version is not None and version != plan.target:
        return plan, Abandon()
    if plan.phase in (Phase.FETCHING, Phase.STAGING) and version == plan.target:
        return _waiting(plan, waiting), Nothing()
    if plan.phase is not Phase.IDLE:
        return plan, Nothing()
    if version is None or version == plan.current:
        return (replace(plan, hold=None) if plan.hold else plan), Nothing()
    if version in plan.bad:
        reason = f"{version} failed here: {plan.failure}".strip(": ")
        return _hold(plan, Hold(version, HoldState.FAILED, reason)), Held(reason, 0.0)
    hold = plan.hold if plan.hold is not None and plan.hold.version == version else None
    if hold is not None and facts.now < hold.until:
        return plan, Held(hold.reason, hold.until)
    if (
        plan.current is not None
        and parse_version(version) < parse_version(plan.current)
        and not directive.pinned
    ):
        why = f"refused to go down from {plan.current} to {version} without an operator pin"
        return _refuse(plan, version, why, facts, backoff=False)
    found = facts.lookup
    if found is None:
        return plan, Look(version, directive.target)
    if isinstance(found, LookupFailed):
        if found.transient:
            return _backoff(plan, version, found.reason, facts)
        return _refuse(plan, version, found.reason, facts, backoff=True)
    if (found.app, found.version) != (directive.app, version):
        why = f"signed target {found.path} describes another release ({found.app} {found.version})"
        return _refuse(plan, version, why, facts, backoff=True)
    if found.floor is not None and parse_version(version) < parse_version(found.floor):
        # the release key marked it below the app's floor: no pin, no server may send it
        why = f"{version} is below the floor {found.floor} signed for {directive.app}"
        return _refuse(plan, version, why, facts, backoff=True)
    if found.kind not in facts.kinds:
        why = f"kind {found.kind!r} is not supported by this agent"
        return _refuse(plan, version, why, facts, backoff=True)
    if found.unmet is not None:
        reason = f"deferred: {found.unmet}"
        plan = report(plan, "deferred", version, found.unmet, at=facts.now)
        return _hold(plan, Hold(version, HoldState.DEFERRED, reason)), Held(reason, 0.0)
    return _waiting(plan, waiting), Update(version)


def outcome(plan: Plan, done: Report, facts: Facts) -> Plan:
    """Record how an update ended: the report and, unless installed, why it is held."""
    plan = report(plan, done.outcome, done.version, done.reason, done.log_tail, at=facts.now)
    if done.outcome == "installed":
        return replace(plan, hold=None)
    if done.version in plan.bad:  # the release is at fault: held until the operator retries
        return _hold(plan, Hold(done.version, HoldState.FAILED, done.reason))
    return _backoff(plan, done.version, done.reason, facts)[0]


def report(
    plan: Plan, outcome: str, version: str, reason: str, log_tail: str = "", *, at: float
) -> Plan:
    """Add a report to the plan, unless it is the very one said last."""
    key = f"{outcome} {version} {reason}"
    if key == plan.said:
        return plan
    pending = (*plan.pending, Pending(outcome, version, reason, log_tail, at))[-MAX_PENDING:]
    return replace(plan, pending=pending, said=key)


def retry(plan: Plan) -> Plan:
    """The operator asked to retry this app."""
    return allow_retry(plan)


def delivered(plan: Plan, count: int) -> Plan:
    """The server has the first `count` pending reports."""
    return replace(plan, pending=plan.pending[count:]) if count else plan


def fetch_retry_at(plan: Plan, facts: Facts) -> float:
    """When a fetch cut by a network fault resumes (the same backoff as every retry)."""
    return facts.now + _delay(plan.tries + 1, facts)


def _delay(attempt: int, facts: Facts) -> float:
    cap = min(facts.poll_s, MAX_BACKOFF_S)
    return retry_delay_s(attempt, base_s=2.0, cap_s=cap, rand=facts.rand)


def _waiting(plan: Plan, waiting: str) -> Plan:
    return plan if plan.waiting == waiting else replace(plan, waiting=waiting)


def _hold(plan: Plan, hold: Hold) -> Plan:
    return plan if plan.hold == hold else replace(plan, hold=hold)


def _backoff(plan: Plan, version: str, reason: str, facts: Facts) -> tuple[Plan, Move]:
    """Not the release's fault: try again after a delay that grows with each fault."""
    previous = plan.hold if plan.hold is not None and plan.hold.version == version else None
    failures = previous.failures + 1 if previous is not None else 1
    until = facts.now + _delay(failures, facts)
    return _hold(plan, Hold(version, HoldState.FAILED, reason, until, failures)), Held(
        reason, until
    )


def _refuse(
    plan: Plan, version: str, reason: str, facts: Facts, *, backoff: bool
) -> tuple[Plan, Move]:
    plan = report(plan, "refused", version, reason, at=facts.now)
    if backoff:
        plan = _backoff(plan, version, reason, facts)[0]
    else:
        plan = _hold(plan, Hold(version, HoldState.FAILED, reason))
    return plan, Refused(reason)
