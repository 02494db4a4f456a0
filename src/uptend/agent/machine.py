"""One app's update as a pure state machine (sans-I/O, like h11's ConnectionState).

Rule: everything that decides a transition lives in this file. `step` maps (plan, event) to
(next plan, next action); `resume` says what to do with a plan found in the journal after a
crash. Neither touches disk, network, processes or the clock. The driver journals the new
plan *before* it performs the action, so every action must be idempotent: after kill -9 the
driver calls `resume` and performs it again.

    IDLE --Directed--> DOWNLOADING --Downloaded--> UNPACKING --Unpacked--> SWITCHING
    SWITCHING --Switched--> PROBATION --Healthy--> IDLE (current = target, reported installed)
    SWITCHING | PROBATION --Failed--> ROLLING_BACK --Switched--> IDLE (target marked bad)
    resume: repeats the interrupted step; after MAX_ATTEMPTS starts of one step the loop
    breaker gives up (DOWNLOADING/UNPACKING -> IDLE, release held back; SWITCHING/PROBATION
    -> ROLLING_BACK). A rollback is repeated for ever: the last good version must run.
    ROLLING_BACK --Failed--> IDLE (the last good version failed too: "rollback_failed";
                              it stays current and the watchdog keeps restarting it)
    DOWNLOADING | UNPACKING --Failed--> IDLE (retried later unless the release is at fault)

Invariant (DESIGN promise 2): `plan.current` always names a complete version in versions/
(or None before the first install), and `current` on disk is switched away from it only
inside SWITCHING/PROBATION/ROLLING_BACK, which resume always brings back to a whole version.
"""

import enum
from dataclasses import dataclass, replace
from typing import assert_never

MAX_ATTEMPTS = 3  # starts of one step, crashes included, before the loop breaker gives up


class IllegalTransitionError(Exception):
    """A bug: an event arrived that the phase cannot take."""


class Phase(enum.StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"  # fetch the signed target into staging (resumable)
    UNPACKING = "unpacking"  # unpack into staging, then rename into versions/<target>
    SWITCHING = "switching"  # stop app, point `current` at target, start app
    PROBATION = "probation"  # target runs; waiting for the health verdict
    ROLLING_BACK = "rolling_back"  # point `current` back at the last good version


@dataclass(frozen=True, slots=True)
class Plan:
    """What the journal holds: enough to resume after a power cut."""

    phase: Phase = Phase.IDLE
    current: str | None = None  # last good version; None before the first install
    target: str | None = None
    attempts: int = 0  # starts of the current phase: 1 when entered, +1 per resume
    failure: str = ""
    bad: tuple[str, ...] = ()  # versions that failed their health check on this host


# Events: facts, past tense.
@dataclass(frozen=True, slots=True)
class Directed:
    version: str


@dataclass(frozen=True, slots=True)
class Downloaded:
    pass


@dataclass(frozen=True, slots=True)
class Unpacked:
    pass


@dataclass(frozen=True, slots=True)
class Switched:
    pass


@dataclass(frozen=True, slots=True)
class Healthy:
    pass


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    release_at_fault: bool = False  # True: a bad release (held back); False: retry later
    log_tail: str = ""


Event = Directed | Downloaded | Unpacked | Switched | Healthy | Failed


# Actions: orders, imperative.
@dataclass(frozen=True, slots=True)
class Download:
    version: str


@dataclass(frozen=True, slots=True)
class Unpack:
    version: str


@dataclass(frozen=True, slots=True)
class SwitchTo:
    version: str | None  # None: stop the app and remove `current` (nothing good to go back to)
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


Action = Download | Unpack | SwitchTo | Probe | Report


def _target(plan: Plan) -> str:
    if plan.target is None:
        raise IllegalTransitionError(f"phase {plan.phase} without a target")
    return plan.target


def _rollback(plan: Plan) -> SwitchTo:
    return SwitchTo(plan.current, verify=plan.current is not None)


def step(plan: Plan, event: Event) -> tuple[Plan, Action | None]:
    """The next plan and the action that gets there."""
    match plan.phase, event:
        case Phase.IDLE, Directed(version=v):
            if v == plan.current or v in plan.bad:
                return plan, None
            fetch = replace(plan, phase=Phase.DOWNLOADING, target=v, failure="", attempts=1)
            return fetch, Download(v)
        case Phase.DOWNLOADING, Downloaded():
            return replace(plan, phase=Phase.UNPACKING, attempts=1), Unpack(_target(plan))
        case Phase.UNPACKING, Unpacked():
            return replace(plan, phase=Phase.SWITCHING, attempts=1), SwitchTo(_target(plan))
        case Phase.DOWNLOADING | Phase.UNPACKING, Failed() as f:
            target = _target(plan)
            bad = (*plan.bad, target) if f.release_at_fault else plan.bad
            idle = Plan(Phase.IDLE, current=plan.current, failure=f.reason, bad=bad)
            return idle, Report("failed", target, f.reason, f.log_tail)
        case Phase.SWITCHING, Switched():
            return replace(plan, phase=Phase.PROBATION, attempts=1), Probe(_target(plan))
        case Phase.PROBATION, Healthy():
            done = Plan(Phase.IDLE, current=_target(plan), bad=plan.bad)
            return done, Report("installed", _target(plan))
        case Phase.SWITCHING | Phase.PROBATION, Failed() as f:
            back = replace(plan, phase=Phase.ROLLING_BACK, failure=f.reason)
            return back, _rollback(plan)
        case Phase.ROLLING_BACK, Switched():
            target = _target(plan)
            outcome = "rolled_back" if plan.current is not None else "failed"
            idle = Plan(
                Phase.IDLE, current=plan.current, failure=plan.failure, bad=(*plan.bad, target)
            )
            return idle, Report(outcome, target, plan.failure)
        case Phase.ROLLING_BACK, Failed() as f:
            target = _target(plan)
            reason = f"{plan.failure}; then the rollback to {plan.current} failed: {f.reason}"
            idle = Plan(Phase.IDLE, current=plan.current, failure=reason, bad=(*plan.bad, target))
            return idle, Report("rollback_failed", target, reason, f.log_tail)
    raise IllegalTransitionError(f"phase {plan.phase} cannot take {event!r}")


def resume(plan: Plan) -> tuple[Plan, Action | None]:
    """What to do with a plan read back from the journal (after a crash or a restart)."""
    match plan.phase:
        case Phase.IDLE:
            return plan, None
        case Phase.DOWNLOADING | Phase.UNPACKING:
            target = _target(plan)
            if plan.attempts >= MAX_ATTEMPTS:  # a state loop (catalogue D35): hold it back
                reason = f"the agent died {plan.attempts} times while {plan.phase} {target}"
                bad = (*plan.bad, target)
                return Plan(Phase.IDLE, current=plan.current, failure=reason, bad=bad), Report(
                    "failed", target, reason
                )
            again = Download(target) if plan.phase is Phase.DOWNLOADING else Unpack(target)
            return replace(plan, attempts=plan.attempts + 1), again
        case Phase.SWITCHING | Phase.PROBATION:
            target = _target(plan)
            if plan.attempts >= MAX_ATTEMPTS:  # crash loop of the new version (D30)
                reason = f"interrupted {plan.attempts} times during {plan.phase}"
                back = replace(plan, phase=Phase.ROLLING_BACK, failure=reason)
                return back, _rollback(plan)
            repeat = SwitchTo(target) if plan.phase is Phase.SWITCHING else Probe(target)
            return replace(plan, attempts=plan.attempts + 1), repeat
        case Phase.ROLLING_BACK:
            return plan, _rollback(plan)
    assert_never(plan.phase)


def allow_retry(plan: Plan) -> Plan:
    """The operator asked to retry: forget which versions failed here."""
    return replace(plan, bad=(), failure="")


def is_settled(plan: Plan) -> bool:
    return plan.phase is Phase.IDLE
