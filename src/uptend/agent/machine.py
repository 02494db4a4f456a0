"""One app's update as a pure state machine (sans-I/O, like h11's ConnectionState).

Rule: everything that decides a transition of one update lives in this file; whether to
start an update at all lives in `decide`. `step` maps (plan, event) to (next plan, next
action); `resume` says what to do with a plan found in the journal after a crash. Neither
touches disk, network, processes or the clock. The driver journals the new plan *before* it
performs the action, so every action must be idempotent: after kill -9 the driver calls
`resume` and performs it again. Phase names are kind-neutral: the installer of the target's
kind does the work of each phase.

    IDLE --Directed--> FETCHING --Fetched--> STAGING --Staged--> ACTIVATING
    STAGING --Staged--> READY while `waiting` (the directive says "not now": staged, kept)
    READY --Cleared--> ACTIVATING; READY --Abandoned--> IDLE (the directive moved on)
    ACTIVATING --Switched--> PROBATION --Healthy--> IDLE (current = target, reported installed)
    ACTIVATING | PROBATION --Failed--> ROLLING_BACK --Switched--> IDLE (target marked bad)
    FETCHING --Failed(retry_at)--> FETCHING (a network fault: the download resumes later)
    FETCHING --Abandoned--> IDLE (the directive moved on before anything was activated)
    resume: repeats the interrupted step; after MAX_ATTEMPTS starts of one step the loop
    breaker gives up (FETCHING/STAGING -> IDLE, release held back; ACTIVATING/PROBATION
    -> ROLLING_BACK). A rollback is repeated for ever: the last good version must run.
    ROLLING_BACK --Failed--> IDLE (the last good version failed too: "rollback_failed";
                              it stays current and the watchdog keeps restarting it)
    FETCHING | STAGING --Failed--> IDLE (retried later unless the release is at fault)

Invariant (docs/architecture.md promise 2): `plan.current` always names a complete version
(or None before the first install), and the installed version is switched away from it only
inside ACTIVATING/PROBATION/ROLLING_BACK, which resume always brings back to a whole version.
"""

import enum
from dataclasses import dataclass, replace
from typing import assert_never

MAX_ATTEMPTS = 3  # starts of one step, crashes included, before the loop breaker gives up


class IllegalTransitionError(Exception):
    """A bug: an event arrived that the phase cannot take."""


class Phase(enum.StrEnum):
    IDLE = "idle"
    FETCHING = "fetching"  # fetch the signed target into staging (resumable)
    STAGING = "staging"  # the installer prepares the verified artifact (bundle: unpack)
    READY = "ready"  # the target is staged, complete; activation waits for the directive's go
    ACTIVATING = "activating"  # stop the app, make the target the installed version, start it
    PROBATION = "probation"  # target runs; the loop judges its health until `deadline`
    ROLLING_BACK = "rolling_back"  # make the last good version installed again


class HoldState(enum.StrEnum):
    FAILED = "failed"
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class Hold:
    """Why the app is not on its directed version right now (decided by `decide`)."""

    version: str
    state: HoldState
    reason: str
    until: float = 0.0  # wall time before which no new attempt is made; 0: re-judge each poll
    failures: int = 0  # transient faults in a row (the backoff's attempt number)


@dataclass(frozen=True, slots=True)
class Pending:
    """A report recorded with the plan that produced it, sent at the next check-in."""

    outcome: str
    version: str
    reason: str
    log_tail: str
    at: float  # wall time, seconds


@dataclass(frozen=True, slots=True)
class Plan:
    """What the journal holds: enough to resume after a power cut, and to decide."""

    phase: Phase = Phase.IDLE
    current: str | None = None  # last good version; None before the first install
    target: str | None = None
    attempts: int = 0  # starts of the current phase: 1 when entered, +1 per resume
    failure: str = ""
    bad: tuple[str, ...] = ()  # versions that failed their health check on this host
    deadline: float = 0.0  # PROBATION / verified rollback: wall time of the verdict; 0: unset
    tries: int = 0  # FETCHING: network faults so far (the backoff's attempt number)
    retry_at: float = 0.0  # FETCHING: wall time before which the download is not resumed
    hold: Hold | None = None
    pending: tuple[Pending, ...] = ()  # reports not yet delivered
    said: str = ""  # key of the last report made: the same report twice is said once
    waiting: str = ""  # why activation must wait (the directive's hold), "" to go on at once


# Events: facts, past tense.
@dataclass(frozen=True, slots=True)
class Directed:
    version: str


@dataclass(frozen=True, slots=True)
class Fetched:
    pass


@dataclass(frozen=True, slots=True)
class Staged:
    pass


@dataclass(frozen=True, slots=True)
class Switched:
    pass


@dataclass(frozen=True, slots=True)
class Healthy:
    pass


@dataclass(frozen=True, slots=True)
class Abandoned:
    pass


@dataclass(frozen=True, slots=True)
class Cleared:
    """The directive's hold on a staged target is lifted: activate it."""


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    release_at_fault: bool = False  # True: a bad release (held back); False: retry later
    log_tail: str = ""
    retry_at: float = 0.0  # > 0: a network fault while fetching, resumed in place at that time


Event = Directed | Fetched | Staged | Switched | Healthy | Abandoned | Cleared | Failed


# Actions: orders, imperative.
@dataclass(frozen=True, slots=True)
class Fetch:
    version: str


@dataclass(frozen=True, slots=True)
class Stage:
    version: str


@dataclass(frozen=True, slots=True)
class SwitchTo:
    version: str | None  # None: stop the app and deactivate (nothing good to go back to)
    verify: bool = False  # a rollback: check the old version stays up before reporting Switched


@dataclass(frozen=True, slots=True)
class Probe:
    version: str


@dataclass(frozen=True, slots=True)
class Report:
    outcome: str  # installed | failed | rolled_back | rollback_failed
    version: str
    reason: str = ""
    log_tail: str = ""


Action = Fetch | Stage | SwitchTo | Probe | Report


def _target(plan: Plan) -> str:
    if plan.target is None:
        raise IllegalTransitionError(f"phase {plan.phase} without a target")
    return plan.target


def _rollback(plan: Plan) -> SwitchTo:
    return SwitchTo(plan.current, verify=plan.current is not None)


def _enter(plan: Plan, phase: Phase) -> Plan:
    return replace(plan, phase=phase, attempts=1, deadline=0.0, tries=0, retry_at=0.0)


def _idle(plan: Plan, *, current: str | None, failure: str = "", bad: tuple[str, ...]) -> Plan:
    settled = _enter(plan, Phase.IDLE)
    return replace(
        settled, current=current, target=None, attempts=0, failure=failure, bad=bad, waiting=""
    )


def step(plan: Plan, event: Event) -> tuple[Plan, Action | None]:
    """The next plan and the action that gets there."""
    match plan.phase, event:
        case Phase.IDLE, Directed(version=v):
            if v == plan.current or v in plan.bad:
                return plan, None
            return replace(_enter(plan, Phase.FETCHING), target=v, failure=""), Fetch(v)
        case Phase.FETCHING, Fetched():
            return _enter(plan, Phase.STAGING), Stage(_target(plan))
        case Phase.STAGING, Staged():
            if plan.waiting:
                return _enter(plan, Phase.READY), None
            return _enter(plan, Phase.ACTIVATING), SwitchTo(_target(plan))
        case Phase.READY, Cleared():
            return _enter(replace(plan, waiting=""), Phase.ACTIVATING), SwitchTo(_target(plan))
        case Phase.FETCHING, Failed(retry_at=at) as f if at > 0:
            again = replace(plan, tries=plan.tries + 1, retry_at=at, failure=f.reason)
            return again, Fetch(_target(plan))
        case Phase.FETCHING | Phase.READY, Abandoned():
            return _idle(plan, current=plan.current, bad=plan.bad), None
        case Phase.FETCHING | Phase.STAGING, Failed() as f:
            target = _target(plan)
            bad = (*plan.bad, target) if f.release_at_fault else plan.bad
            idle = _idle(plan, current=plan.current, failure=f.reason, bad=bad)
            return idle, Report("failed", target, f.reason, f.log_tail)
        case Phase.ACTIVATING, Switched():
            return _enter(plan, Phase.PROBATION), Probe(_target(plan))
        case Phase.PROBATION, Healthy():
            done = _idle(plan, current=_target(plan), bad=plan.bad)
            return done, Report("installed", _target(plan))
        case Phase.ACTIVATING | Phase.PROBATION, Failed() as f:
            back = replace(plan, phase=Phase.ROLLING_BACK, failure=f.reason, deadline=0.0)
            return back, _rollback(plan)
        case Phase.ROLLING_BACK, Switched():
            target = _target(plan)
            outcome = "rolled_back" if plan.current is not None else "failed"
            bad = (*plan.bad, target)
            return _idle(plan, current=plan.current, failure=plan.failure, bad=bad), Report(
                outcome, target, plan.failure
            )
        case Phase.ROLLING_BACK, Failed() as f:
            target = _target(plan)
            reason = f"{plan.failure}; then the rollback to {plan.current} failed: {f.reason}"
            idle = _idle(plan, current=plan.current, failure=reason, bad=(*plan.bad, target))
            return idle, Report("rollback_failed", target, reason, f.log_tail)
    raise IllegalTransitionError(f"phase {plan.phase} cannot take {event!r}")


def resume(plan: Plan) -> tuple[Plan, Action | None]:
    """What to do with a plan read back from the journal (after a crash or a restart)."""
    match plan.phase:
        case Phase.IDLE | Phase.READY:
            return plan, None
        case Phase.FETCHING | Phase.STAGING:
            target = _target(plan)
            if plan.attempts >= MAX_ATTEMPTS:  # a state loop (docs/faults.md D35): hold it back
                reason = f"the agent died {plan.attempts} times while {plan.phase} {target}"
                idle = _idle(plan, current=plan.current, failure=reason, bad=(*plan.bad, target))
                return idle, Report("failed", target, reason)
            again = Fetch(target) if plan.phase is Phase.FETCHING else Stage(target)
            return replace(plan, attempts=plan.attempts + 1, retry_at=0.0), again
        case Phase.ACTIVATING | Phase.PROBATION:
            target = _target(plan)
            if plan.attempts >= MAX_ATTEMPTS:  # crash loop of the new version (D30)
                reason = f"interrupted {plan.attempts} times during {plan.phase}"
                back = replace(plan, phase=Phase.ROLLING_BACK, failure=reason, deadline=0.0)
                return back, _rollback(plan)
            repeat = SwitchTo(target) if plan.phase is Phase.ACTIVATING else Probe(target)
            return replace(plan, attempts=plan.attempts + 1, deadline=0.0), repeat
        case Phase.ROLLING_BACK:
            return replace(plan, deadline=0.0), _rollback(plan)
    assert_never(plan.phase)


def allow_retry(plan: Plan) -> Plan:
    """The operator asked to retry: forget which versions failed here and what was said."""
    return replace(plan, bad=(), failure="", hold=None, said="")


def is_settled(plan: Plan) -> bool:
    """Nothing is in flight: idle, or a staged target waiting for its go."""
    return plan.phase in (Phase.IDLE, Phase.READY)
