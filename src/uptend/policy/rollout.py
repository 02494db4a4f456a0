"""Staged rollouts: a channel's plan, who is in which wave, the rollout's states, and its verdicts.

Pure: no database, no clock (`now` is a parameter), no randomness (membership and splay come
from a hash). The server reads the facts, asks here, and writes the answer with a
compare-and-set on the rollout's state version.

- **Plan.** Cumulative waves in percent of the channel's hosts (`5,25,100`), a soak after each
  host's probation, a failure threshold judged once `min_sample` hosts reported, concurrency
  caps (overall and per label value), what a halt does (`revert` or `hold`), a report deadline
  and a download splay. The default plan is one wave of 100 % with no soak, no threshold and no
  cap: every host takes a new release at its next check-in, as before rollouts existed.
- **Waves.** The hosts are ranked by SHA-256 of (rollout id, agent id); wave k takes the first
  ceil(p_k * N) of them, so waves only grow, a 3-host fleet gets a 1-host first wave, and
  the same id always gives the same waves (what `rollout preview` shows is what runs).
- **States.** running -> paused | halted | completed | aborted | superseded; paused ->
  running | aborted | superseded; halted -> aborted | superseded. The last three are final.
- **Hosts.** A host is waiting (not told yet), installing (told, no healthy report yet),
  deferred (told, but its window or freeze holds it), soaking (on the new version healthy
  after its probation, for `soak_s`), succeeded (soaked without a crash) or failed (its update
  failed, its app crashed during soak, or it said nothing within the report deadline).
"""

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from uptend.errors import ConfigError
from uptend.protocol.reasons import ReasonCode

MAX_WAVES = 20
MAX_LABEL_CAPS = 16


class OnHalt(StrEnum):
    REVERT = "revert"  # every host that took the release goes back to the version before
    HOLD = "hold"  # hosts stay where they are; no new host takes it


class State(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    COMPLETED = "completed"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"


class Event(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    HALT = "halt"
    COMPLETE = "complete"
    ABORT = "abort"
    SUPERSEDE = "supersede"


FINAL = frozenset({State.COMPLETED, State.ABORTED, State.SUPERSEDED})

_TRANSITIONS: dict[State, dict[Event, State]] = {
    State.RUNNING: {
        Event.PAUSE: State.PAUSED,
        Event.HALT: State.HALTED,
        Event.COMPLETE: State.COMPLETED,
        Event.ABORT: State.ABORTED,
        Event.SUPERSEDE: State.SUPERSEDED,
    },
    State.PAUSED: {
        Event.RESUME: State.RUNNING,
        Event.ABORT: State.ABORTED,
        Event.SUPERSEDE: State.SUPERSEDED,
    },
    State.HALTED: {Event.ABORT: State.ABORTED, Event.SUPERSEDE: State.SUPERSEDED},
}


def transition(state: State, event: Event) -> State:
    """The state after `event`; a `ConfigError` naming both when the event does not apply."""
    after = _TRANSITIONS.get(state, {}).get(event)
    if after is None:
        hint = (
            "it is over: publish a new release to start another rollout"
            if state in FINAL
            else "abort it, or publish a fixed release (it supersedes this rollout)"
            if state is State.HALTED
            else f"a {state.value} rollout can: " + ", ".join(e.value for e in _TRANSITIONS[state])
        )
        raise ConfigError(f"cannot {event.value} a {state.value} rollout", hint=hint)
    return after


@dataclass(frozen=True, slots=True)
class Plan:
    """A channel's rollout plan. `waves` are cumulative percentages, the last one 100."""

    waves: tuple[float, ...] = (100.0,)
    soak_s: float = 0.0
    max_failure_rate: float = 1.0  # halt when failed/reported exceeds it (1.0: never)
    min_sample: int = 1  # hosts that must have reported before the rate is judged
    max_concurrent: int | None = None  # hosts installing at once, overall
    max_concurrent_per_label: tuple[tuple[str, int], ...] = ()  # (label key, per value)
    on_halt: OnHalt = OnHalt.REVERT
    report_deadline_s: float = 3600.0  # told (or wave open) and silent this long: failed
    splay_s: float = 0.0  # starts spread over this long after a wave opens

    def __post_init__(self) -> None:
        check_plan(self)


def check_plan(plan: Plan) -> None:
    """Refuse a plan that could not run as written."""
    w = plan.waves
    if not 1 <= len(w) <= MAX_WAVES or any(not 0 < p <= 100 for p in w) or w[-1] != 100:
        raise ConfigError(
            f"--waves {_waves_text(w)} is not a list of percentages ending at 100",
            hint=f"give up to {MAX_WAVES} cumulative percentages, e.g. --waves 5,25,100",
        )
    if any(b <= a for a, b in itertools.pairwise(w)):
        raise ConfigError(
            f"--waves {_waves_text(w)} does not grow",
            hint="each wave is the cumulative share of hosts: 5,25,100, not 25,5,100",
        )
    for name, value in (
        ("--soak", plan.soak_s),
        ("--report-deadline", plan.report_deadline_s),
        ("--splay", plan.splay_s),
    ):
        if not 0 <= value <= 30 * 86400:
            raise ConfigError(f"{name} {value:g} is out of range", hint="give 0 to 2592000 s")
    if plan.report_deadline_s <= 0:
        raise ConfigError("--report-deadline must be more than 0 s", hint="e.g. 3600")
    if not 0 <= plan.max_failure_rate <= 1:
        raise ConfigError(
            f"--max-failure-rate {plan.max_failure_rate:g} is not between 0 and 1",
            hint="e.g. 0.05 halts once more than 5 % of the reported hosts failed",
        )
    overall = 1 if plan.max_concurrent is None else plan.max_concurrent
    caps = [plan.min_sample, overall, *(n for _, n in plan.max_concurrent_per_label)]
    if any(n < 1 for n in caps):
        raise ConfigError(
            "--min-sample and the concurrency caps must be at least 1",
            hint="leave a cap out for no cap",
        )
    keys = [k for k, _ in plan.max_concurrent_per_label]
    if len(keys) > MAX_LABEL_CAPS or len(set(keys)) != len(keys):
        raise ConfigError(
            "--max-concurrent-per-label repeats a key (or gives too many)",
            hint=f"give each label key once, at most {MAX_LABEL_CAPS}",
        )


def _waves_text(waves: Sequence[float]) -> str:
    return ",".join(f"{p:g}" for p in waves)


def parse_waves(text: str) -> tuple[float, ...]:
    """`5,25,100` -> (5.0, 25.0, 100.0); a `ConfigError` for anything else."""
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--waves {text!r} is not a list of numbers", hint="e.g. --waves 5,25,100"
        ) from None


def parse_label_cap(text: str) -> tuple[str, int]:
    """`zone=1` -> ("zone", 1)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value.isdigit():
        raise ConfigError(f"--max-concurrent-per-label {text!r} is not KEY=N", hint="e.g. zone=1")
    return key, int(value)


# -- waves ---------------------------------------------------------------------------------------


def _key(rollout_id: str, agent: str) -> bytes:
    return hashlib.sha256(f"{rollout_id}\0{agent}".encode()).digest()


def ranked(rollout_id: str, hosts: Iterable[str]) -> list[str]:
    """The hosts in the rollout's order: by hash of (rollout id, agent id), then id."""
    return sorted(set(hosts), key=lambda a: (_key(rollout_id, a), a))


def wave_sizes(waves: Sequence[float], n: int) -> list[int]:
    """Cumulative hosts per wave: ceil(p_k * n / 100), exact (no float rounding)."""
    return [math.ceil(Fraction(repr(p)) * n / 100) for p in waves]


def membership(rollout_id: str, hosts: Iterable[str], waves: Sequence[float]) -> dict[str, int]:
    """Agent id -> the index of the wave that first takes it."""
    order = ranked(rollout_id, hosts)
    out: dict[str, int] = {}
    start = 0
    for k, end in enumerate(wave_sizes(waves, len(order))):
        out.update((a, k) for a in order[start:end])
        start = max(start, end)
    return out


def cutoffs(rollout_id: str, hosts: Iterable[str], waves: Sequence[float]) -> tuple[str, ...]:
    """Per wave, the hash rank (hex) of its last host at the start ("" while none yet).

    What `wave_of` places a host by: a host enrolled after the start falls into the wave its
    own rank puts it in among the hosts ranked at the start, like any other host of that rank.
    """
    order = ranked(rollout_id, hosts)
    return tuple(
        _key(rollout_id, order[end - 1]).hex() if end else ""
        for end in wave_sizes(waves, len(order))
    )


def wave_of(rollout_id: str, agent: str, cuts: Sequence[str]) -> int:
    """The wave of a host by its rank: the first whose last host ranks at or after it.

    For a host ranked at the start it is the wave `membership` gave it; one ranked after
    every host of the start joins the last wave.
    """
    key = _key(rollout_id, agent).hex()
    return next((k for k, cut in enumerate(cuts) if key <= cut), len(cuts) - 1)


def splay_offset(rollout_id: str, agent: str, splay_s: float) -> timedelta:
    """How long after its wave opens this host starts: spread evenly over the splay."""
    fraction = int.from_bytes(_key(rollout_id, agent)[:8], "big") / 2**64
    return timedelta(seconds=fraction * splay_s)


# -- hosts ---------------------------------------------------------------------------------------


class Phase(StrEnum):
    WAITING = "waiting"
    INSTALLING = "installing"
    DEFERRED = "deferred"
    SOAKING = "soaking"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


DONE = frozenset({Phase.SUCCEEDED, Phase.FAILED})


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the server knows of one host in a rollout.

    `healthy_at`: first seen running the new version past its probation; `restarts_then` and
    `restarts` are the app's restart count then and now (the agent's counter: no clock skew).
    """

    wave: int
    told_at: datetime | None = None  # when it was first allowed to take the release
    healthy_at: datetime | None = None
    failed: bool = False  # its update failed or was rolled back
    deferred: bool = False  # told, but its schedule holds the install
    restarts_then: int = 0
    restarts: int = 0
    seen_at: datetime | None = None  # its last check-in


def phase(f: HostFacts, *, wave_opened_at: datetime | None, plan: Plan, now: datetime) -> Phase:
    """Where one host is in the rollout at `now`."""
    deadline = timedelta(seconds=plan.report_deadline_s)
    if f.failed:
        return Phase.FAILED
    if f.healthy_at is not None:
        if f.restarts > f.restarts_then:
            return Phase.FAILED  # its app crashed during soak
        soaked = now >= f.healthy_at + timedelta(seconds=plan.soak_s)
        return Phase.SUCCEEDED if soaked else Phase.SOAKING
    if f.told_at is not None:
        if f.deferred:
            return Phase.DEFERRED
        return Phase.FAILED if now >= f.told_at + deadline else Phase.INSTALLING
    silent = f.seen_at is None or f.seen_at < now - deadline
    if wave_opened_at is not None and now >= wave_opened_at + deadline and silent:
        return Phase.FAILED  # silent since its wave opened, past the deadline
    return Phase.WAITING


# -- the evaluator -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rollout:
    """A rollout as stored: its state, the open wave and when it opened."""

    id: str
    state: State
    wave: int
    wave_opened_at: datetime
    waves: int  # how many waves its plan has


@dataclass(frozen=True, slots=True)
class Step:
    """The evaluator's answer: the state and open wave next, and why (`changed`: write it)."""

    state: State
    wave: int
    reason: str
    changed: bool
    counts: Counter[Phase] = field(default_factory=Counter)


def evaluate(rollout: Rollout, plan: Plan, hosts: Mapping[str, HostFacts], now: datetime) -> Step:
    """The next state of a running rollout: halt, open the next wave, complete, or stay."""
    opened = rollout.wave_opened_at
    phases = {
        a: (
            f.wave,
            phase(f, wave_opened_at=opened if f.wave <= rollout.wave else None, plan=plan, now=now),
        )
        for a, f in hosts.items()
    }
    return judge(rollout, plan, phases)


def judge(rollout: Rollout, plan: Plan, phases: Mapping[str, tuple[int, Phase]]) -> Step:
    """The next state from each host's (wave, phase): the evaluator's decision itself."""
    counts = Counter(p for _, p in phases.values())
    if rollout.state is not State.RUNNING:
        return Step(rollout.state, rollout.wave, f"the rollout is {rollout.state}", False, counts)
    failed, reported = counts[Phase.FAILED], counts[Phase.FAILED] + counts[Phase.SUCCEEDED]
    if reported >= plan.min_sample and failed > plan.max_failure_rate * reported:
        why = (
            f"{failed} of {reported} reported hosts failed"
            f" (more than {plan.max_failure_rate:.0%}) in wave {rollout.wave + 1}"
        )
        return Step(State.HALTED, rollout.wave, why, True, counts)
    left = sum(p not in DONE for w, p in phases.values() if w <= rollout.wave)
    if left:
        why = f"wave {rollout.wave + 1}: {left} hosts not done soaking"
        return Step(State.RUNNING, rollout.wave, why, False, counts)
    if rollout.wave + 1 >= rollout.waves:
        return Step(State.COMPLETED, rollout.wave, "every wave soaked", True, counts)
    why = f"wave {rollout.wave + 1} soaked: wave {rollout.wave + 2} opens"
    return Step(State.RUNNING, rollout.wave + 1, why, True, counts)


# -- the gate for one host -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Take:
    """Take the new release now."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the version it has; why (a typed reason code), and until when at the earliest."""

    code: ReasonCode
    message: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Revert:
    """Go back to the version it ran before the rollout (still on disk: a switch)."""

    version: str
    message: str


Gate = Take | Hold | Revert


@dataclass(frozen=True, slots=True)
class Held:
    """What the fleet view says of a host a rollout holds back: the rollout, its wave, why."""

    rollout: str
    wave: int  # the host's wave, from 0
    message: str


@dataclass(frozen=True, slots=True)
class Installing:
    """Hosts installing now: in all, and per (label key, value)."""

    total: int = 0
    by_label: Mapping[tuple[str, str], int] = field(default_factory=dict)


def label_slots(plan: Plan, labels: Mapping[str, str]) -> tuple[tuple[str, str, int], ...]:
    """The (key, value, cap) slots a host with `labels` takes while it installs.

    A host without a capped key is not bounded by that key's cap (it belongs to no rack).
    """
    return tuple(
        (key, labels[key], cap) for key, cap in plan.max_concurrent_per_label if key in labels
    )


def installing(labels: Iterable[Mapping[str, str]]) -> Installing:
    """Count the installing hosts, from each one's labels."""
    total = 0
    by_label: Counter[tuple[str, str]] = Counter()
    for host in labels:
        total += 1
        by_label.update(host.items())
    return Installing(total, by_label)


def gate(
    rollout: Rollout,
    plan: Plan,
    *,
    agent: str,
    wave: int,
    told: bool,
    took: bool,
    previous: str | None,
    labels: Mapping[str, str],
    busy: Installing,
    now: datetime,
) -> Gate:
    """May this host take the rollout's release now?

    Args:
        rollout: the channel head's rollout.
        plan: its plan.
        agent: the host's id (its splay comes from it).
        wave: the host's wave.
        told: it was already let through (it keeps going).
        took: it runs the rollout's release now.
        previous: the version it ran before the rollout.
        labels: the host's labels.
        busy: the hosts installing now (not counting this one).
        now: the clock.
    """
    state = rollout.state
    reverting = state is State.ABORTED or (state is State.HALTED and plan.on_halt is OnHalt.REVERT)
    if reverting and previous is not None and (took or told):
        return Revert(previous, f"rollout {rollout.id} is {state}: back to {previous}")
    if state in (State.HALTED, State.ABORTED):
        return Hold(ReasonCode.HALTED, f"rollout {rollout.id} is {state}")
    if (state is not State.RUNNING and state is not State.PAUSED) or told or took:
        return Take()  # completed or superseded: the rollout no longer holds anyone back
    if state is State.PAUSED:
        return Hold(ReasonCode.WAITING_WAVE, f"rollout {rollout.id} is paused")
    if wave > rollout.wave:
        msg = f"waiting for wave {wave + 1}: opens after wave {rollout.wave + 1} soaks"
        return Hold(ReasonCode.WAITING_WAVE, msg)
    starts = rollout.wave_opened_at + splay_offset(rollout.id, agent, plan.splay_s)
    if now < starts:
        return Hold(ReasonCode.WAITING_WAVE, f"wave {wave + 1}: splay until {starts}", starts)
    if plan.max_concurrent is not None and busy.total >= plan.max_concurrent:
        msg = f"{busy.total} hosts installing (cap {plan.max_concurrent})"
        return Hold(ReasonCode.CONCURRENCY_CAP, msg)
    for key, value, cap in label_slots(plan, labels):
        if busy.by_label.get((key, value), 0) >= cap:
            return Hold(ReasonCode.CONCURRENCY_CAP, f"{cap} hosts installing in {key}={value}")
    return Take()
