"""The one place that decides what becomes of an app's signed config: pure, no I/O, no clock.

`decide` maps (the directed config version, the app's config state, the host's facts) to
the next state and one move. The rules, in order: a config in its trial is judged first
(nothing else starts meanwhile); no directed config, or the one applied, needs nothing; a
version that failed or was refused here is skipped (the server stops sending it once told,
and this holds even if it does not); a version below the applied one is refused (a replayed
old config: a rollback is a new version, so versions only go up); nothing starts while an
update of the app is in flight or it has no version installed; then the signed document is
fetched and verified (`Fetch`: in the worker child, through the TUF metadata), and a
verified one is applied (`Apply`) with a trial deadline; one that does not verify is refused
and never fetched again. `judged` records the trial's verdict: healthy makes it the applied
version, unhealthy makes it bad (the caller restores the previous document).
"""

from dataclasses import dataclass, replace

MAX_BAD = 20  # versions remembered as bad per app: the newest
_NOTE = 200  # characters of a failure kept in the state


@dataclass(frozen=True, slots=True)
class ConfigState:
    applied: int | None = None  # the version the app runs with (None: none signed yet)
    trying: int | None = None  # the version in its trial
    deadline: float = 0.0  # wall time from which the trial is judged
    bad: tuple[int, ...] = ()  # versions that failed or were refused here, oldest first
    failure: str = ""  # why the newest bad version was


@dataclass(frozen=True, slots=True)
class Fetched:
    version: int  # the signed document of this version is verified and kept on disk


@dataclass(frozen=True, slots=True)
class FetchFailed:
    reason: str
    transient: bool  # the repository could not be reached (else: it does not verify)


@dataclass(frozen=True, slots=True)
class Facts:
    now: float
    settled: bool  # no update of the app in flight, and a version of it is installed
    probation_s: float  # the app's [health] probation
    fetched: Fetched | FetchFailed | None = None  # None: not fetched yet


@dataclass(frozen=True, slots=True)
class Nothing:
    why: str = ""


@dataclass(frozen=True, slots=True)
class Fetch:
    version: int
    target: str


@dataclass(frozen=True, slots=True)
class Apply:
    version: int


@dataclass(frozen=True, slots=True)
class Judge:
    version: int


@dataclass(frozen=True, slots=True)
class Refused:
    version: int
    reason: str


Move = Nothing | Fetch | Apply | Judge | Refused


def decide(
    version: int | None, target: str | None, state: ConfigState, facts: Facts
) -> tuple[ConfigState, Move]:
    """The next config state of one app and the move that follows from the directive."""
    if state.trying is not None:
        return state, Judge(state.trying)
    if version is None or target is None or version == state.applied:
        return state, Nothing()
    if version in state.bad:
        return state, Nothing(f"config {version} failed here: {state.failure}")
    if state.applied is not None and version < state.applied:
        why = f"config {version} is older than the applied {state.applied}: a replay, refused"
        return _bad(state, version, why), Refused(version, why)
    if not facts.settled:
        return state, Nothing("waiting for the app's update to settle")
    fetched = facts.fetched
    if fetched is None:
        return state, Fetch(version, target)
    if isinstance(fetched, FetchFailed):
        if fetched.transient:
            return state, Nothing(f"config {version}: {fetched.reason} (tried again next poll)")
        why = f"config {version} refused: {fetched.reason}"
        return _bad(state, version, why), Refused(version, why)
    if fetched.version != version:
        return state, Nothing()
    return replace(state, trying=version, deadline=facts.now + facts.probation_s), Apply(version)


def judged(state: ConfigState, healthy: bool, reason: str = "") -> ConfigState:
    """The trial's verdict: the applied version, or a bad one (the previous stays applied)."""
    if state.trying is None:
        return state
    if healthy:
        return replace(state, applied=state.trying, trying=None, deadline=0.0)
    why = f"config {state.trying} rolled back: {reason}"
    return replace(_bad(state, state.trying, why), trying=None, deadline=0.0)


def shown(state: ConfigState) -> tuple[int | None, int | None, str]:
    """What a check-in says: applied version, newest bad one, failure to show (or '').

    The failure is shown in place of "running" while the newest event is a failure.
    """
    newest_bad = state.bad[-1] if state.bad else None
    failing = newest_bad is not None and newest_bad > (state.applied or 0)
    return state.applied, newest_bad, state.failure if failing else ""


def _bad(state: ConfigState, version: int, why: str) -> ConfigState:
    bad = (*(v for v in state.bad if v != version), version)
    return replace(state, bad=bad[-MAX_BAD:], failure=why[:_NOTE])


def replace_deadline(state: ConfigState, deadline: float) -> ConfigState:
    """A trial judged again from `deadline` (after the agent restarted)."""
    return replace(state, deadline=deadline)
