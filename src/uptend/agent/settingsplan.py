"""Deciding the trial of the agent's own signed settings: pure, no I/O, no clock.

The agent's settings (`uptend config set uptend-agent FILE`, `protocol/settings.py`) go
through the same versions as an app's config, so `configplan.decide` picks the version
(skip a bad one, refuse a replay, fetch, then apply with a deadline). What differs is the
trial, decided here: an app's config is judged by the app's health, the agent's settings by
the agent's own check-ins. A trial is healthy at the first check-in that succeeds with the
new settings in force; it fails when the deadline has passed and at least one check-in was
tried with them since this process started (so an agent restarted after its deadline tries
once before it gives the settings up). A failed trial restores the previous settings
(`settingskeeper.py` does that) and is reported as `rolled_back`.

`overrides` maps a settings document onto the fields of agent.json it replaces.
"""

from dataclasses import dataclass

from uptend.agent.configplan import ConfigState
from uptend.protocol.settings import AgentSettings


@dataclass(frozen=True, slots=True)
class Trial:
    """What this process saw of the check-ins since the trial's settings came into force."""

    confirmed: bool = False  # a check-in succeeded with them
    attempted: bool = False  # a check-in was tried with them (and failed)
    error: str = ""  # the last check-in failure


@dataclass(frozen=True, slots=True)
class Wait:
    pass


@dataclass(frozen=True, slots=True)
class Healthy:
    version: int


@dataclass(frozen=True, slots=True)
class Unhealthy:
    version: int
    reason: str


Verdict = Wait | Healthy | Unhealthy


def judge(state: ConfigState, trial: Trial, now: float, bound_s: float) -> Verdict:
    """The verdict on the settings in their trial (Wait when there is none)."""
    if state.trying is None:
        return Wait()
    if trial.confirmed:
        return Healthy(state.trying)
    if trial.attempted and now >= state.deadline:
        why = f"no check-in succeeded within {bound_s:g}s with them"
        return Unhealthy(state.trying, f"{why} ({trial.error})" if trial.error else why)
    return Wait()


def checked_in(trial: Trial, ok: bool, error: str = "") -> Trial:
    """The trial after one check-in with its settings in force."""
    if ok:
        return Trial(confirmed=True, attempted=True)
    return Trial(confirmed=trial.confirmed, attempted=True, error=error)


def overrides(settings: AgentSettings) -> dict[str, object]:
    """The agent.json fields the settings replace (those they set), as agent.json holds them."""
    out: dict[str, object] = {}
    if settings.poll_interval_s is not None:
        out["poll_interval_s"] = settings.poll_interval_s
    if settings.log_level is not None:
        out["log_level"] = settings.log_level
    if settings.precondition_commands is not None:
        out["precondition_commands"] = [list(c) for c in settings.precondition_commands]
    if settings.check_reboot is not None:
        out["check_reboot"] = settings.check_reboot
    if settings.check_disk is not None:
        out["check_disk"] = settings.check_disk
    if settings.server is not None:
        out["server"] = settings.server
    return out
