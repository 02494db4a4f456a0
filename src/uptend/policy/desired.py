"""Which version of an app an agent should run, and why it runs what it runs.

Pure: no database, no clock. The server feeds it what it read and sends the result as a
directive; the fleet view explains each app with the same words and a typed reason.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from uptend.policy.pins import Resolved
from uptend.policy.rollout import Held
from uptend.policy.schedule import Wait
from uptend.protocol import (
    AppState,
    AutoUpdateOff,
    ConcurrencyCap,
    DeferredPrecondition,
    Failed,
    Floor,
    Frozen,
    Halted,
    NeverCheckedIn,
    NoRelease,
    NotAssigned,
    Offline,
    OutsideWindow,
    Pinned,
    Reason,
    ReasonCode,
    UpdatePending,
    Updating,
    UpToDate,
    WaitingWave,
)
from uptend.protocol.versions import newest

LAST_SEEN_MAX_LAG_S = 10.0
"""The server writes last-seen in batches: a recorded last_seen is at most this late."""

OFFLINE_AFTER_POLLS = 3
"""Polls an agent may miss (jitter, a slow update, a restart) before it counts as offline."""


def offline_after_s(poll_interval_s: float) -> float:
    """Silence longer than this, by the server's last-seen, makes an agent offline."""
    return OFFLINE_AFTER_POLLS * poll_interval_s + LAST_SEEN_MAX_LAG_S


@dataclass(frozen=True, slots=True)
class Decision:
    version: str | None  # None: nothing to run yet
    reason: str
    pinned: bool = False  # an operator pin chose it: the agent may go down to it


def desired_version(
    *,
    app: str,
    channel: str,
    group: str,
    releases: Sequence[str],
    installed: str | None,
    auto_update: bool,
    resolved: Resolved | None = None,
) -> Decision:
    """Decide the version `app` should run on one agent.

    Args:
        app: the app's name.
        channel: the channel the agent's group follows for this app.
        group: the agent's group (named in reasons).
        releases: the versions published on that channel (its head alone is enough).
        installed: the version the agent runs now, if any.
        auto_update: the group's switch; off means "install once, then stay".
        resolved: what the group's pin or the app's floor says instead of the head, if
            anything (`policy.pins.resolve`); a pin is followed whatever `auto_update` says.
    """
    latest = newest(list(releases))
    if latest is None:
        return Decision(installed, f"no release of {app} on channel {channel} yet")
    if resolved is not None:
        if resolved.version is None:
            return Decision(installed, resolved.message)
        return Decision(resolved.version, resolved.message, pinned=resolved.pinned)
    if installed is not None and not auto_update:
        if installed == latest:
            return Decision(installed, f"newest on channel {channel}")
        return Decision(installed, _held(group, latest))
    return Decision(latest, f"newest on channel {channel}")


def _held(group: str, latest: str) -> str:
    return f"automatic updates are off for group {group} ({latest} is available)"


def is_outdated(installed: str | None, newest_available: str | None) -> bool:
    """An agent is outdated for an app when it does not run the newest release it could."""
    return newest_available is not None and installed != newest_available


@dataclass(frozen=True, slots=True)
class AppFacts:
    """What the server knows of one app on one agent: its group's plan and the agent's word."""

    app: str
    group: str
    auto_update: bool
    assigned: bool
    channel: str  # "" when the app is no longer assigned
    head: str | None  # the newest release on that channel
    installed: str | None
    state: AppState
    target: str | None
    said: str  # the agent's own reason (hostile text: printed literally)
    log_tail: str
    last_seen: datetime | None
    enrolled_at: datetime
    offline_after_s: float
    wait: Wait | None = None  # what the group's schedule says of a new release now, if "wait"
    resolved: Resolved | None = None  # what the group's pin or the app's floor says instead
    pin: str | None = None  # the group's pin spec for the app, if any
    floor: str | None = None  # the app's floor, if any
    held: Held | None = None  # what a staged rollout says of the head, if it holds the host

    def desired(self) -> str | None:
        if not self.assigned:
            return self.installed
        return desired_version(
            app=self.app,
            channel=self.channel,
            group=self.group,
            releases=[self.head] if self.head else [],
            installed=self.installed,
            auto_update=self.auto_update,
            resolved=self.resolved,
        ).version


def explain(code: ReasonCode, f: AppFacts) -> Reason:
    """The typed reason for `code` (decided by the fleet query) with its message and details.

    Where the code comes from the agent's own state, its words are the message, as it said them.
    """
    said = f.said
    match code:
        case ReasonCode.UP_TO_DATE:
            assert f.head is not None
            msg = said or f"newest on channel {f.channel}"
            return UpToDate(message=msg, version=f.head, channel=f.channel)
        case ReasonCode.NO_RELEASE:
            msg = f"no release of {f.app} on channel {f.channel} yet"
            return NoRelease(message=msg, channel=f.channel)
        case ReasonCode.NOT_ASSIGNED:
            msg = f"{f.app} is no longer assigned to {f.group}"
            return NotAssigned(message=msg, group=f.group)
        case ReasonCode.PINNED:
            assert f.resolved is not None
            assert f.pin is not None
            version = f.resolved.version
            return Pinned(message=f.resolved.message, group=f.group, pin=f.pin, version=version)
        case ReasonCode.FLOOR:
            assert f.resolved is not None
            assert f.floor is not None
            version = f.resolved.version
            msg = f.resolved.message
            return Floor(message=msg, floor=f.floor, pin=f.pin, version=version)
        case ReasonCode.NEVER_CHECKED_IN:
            msg = "the agent has not checked in since it enrolled"
            return NeverCheckedIn(message=msg, enrolled_at=f.enrolled_at)
        case ReasonCode.OFFLINE:
            assert f.last_seen is not None
            msg = f"offline since {f.last_seen:%Y-%m-%d %H:%M:%S} UTC"
            return Offline(message=msg, since=f.last_seen, after_s=f.offline_after_s)
        case ReasonCode.FAILED:
            error = said or "the last update failed"
            return Failed(message=error, error=error, log_tail=f.log_tail, target=f.target)
        case ReasonCode.AUTO_UPDATE_OFF:
            assert f.head is not None
            return AutoUpdateOff(message=_held(f.group, f.head), group=f.group, available=f.head)
        case ReasonCode.UPDATING:
            return Updating(message=said or "updating", phase=said, target=f.target)
        case ReasonCode.FROZEN:
            assert f.wait is not None
            return Frozen(message=f.wait.message, until=f.wait.until, next=f.wait.next_at)
        case ReasonCode.OUTSIDE_WINDOW:
            assert f.wait is not None
            return OutsideWindow(message=f.wait.message, group=f.group, next=f.wait.next_at)
        case ReasonCode.DEFERRED_PRECONDITION:
            which = said.removeprefix("deferred: ") or "a precondition is not met"
            return DeferredPrecondition(message=said or which, precondition=which)
        case ReasonCode.HALTED | ReasonCode.WAITING_WAVE | ReasonCode.CONCURRENCY_CAP:
            assert f.held is not None
            h = f.held
            if code is ReasonCode.HALTED:
                return Halted(message=h.message, rollout=h.rollout)
            if code is ReasonCode.WAITING_WAVE:
                return WaitingWave(message=h.message, rollout=h.rollout, wave=h.wave + 1)
            return ConcurrencyCap(message=h.message, rollout=h.rollout)
        case ReasonCode.UPDATE_PENDING:
            assert f.head is not None
            desired = f.desired() or f.head
            msg = said or f"{desired} is published: the agent installs it at its next check-in"
            return UpdatePending(message=msg, desired=desired)
        case _:
            assert_never(code)
