"""Why a host is (not) on the newest release: one typed reason per app, and update outcomes.

The same objects go to the API, the CLI and the dashboard: a `code` to filter and count on,
a `message` for people, and the details that code carries (a discriminated union on `code`).
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Outcome(StrEnum):
    """The outcome of one update attempt, as an agent reports it."""

    INSTALLED = "installed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    REFUSED = "refused"  # verification refused the release: never installed
    DEFERRED = "deferred"  # an unmet precondition: not a failure


FAILED_OUTCOMES = frozenset({Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.ROLLBACK_FAILED})


class ReasonCode(StrEnum):
    """One answer to "why is this host not on the newest release?", in order of precedence."""

    UP_TO_DATE = "up_to_date"
    NO_RELEASE = "no_release"
    NOT_ASSIGNED = "not_assigned"
    PINNED = "pinned"
    FLOOR = "floor"
    NEVER_CHECKED_IN = "never_checked_in"
    OFFLINE = "offline"
    FAILED = "failed"
    AUTO_UPDATE_OFF = "auto_update_off"
    UPDATING = "updating"
    FROZEN = "frozen"
    OUTSIDE_WINDOW = "outside_window"
    DEFERRED_PRECONDITION = "deferred_precondition"
    HALTED = "halted"  # a staged rollout halted (or was aborted) before reaching the host
    WAITING_WAVE = "waiting_wave"  # the host's wave of the rollout has not opened yet
    CONCURRENCY_CAP = "concurrency_cap"  # the rollout's cap on hosts installing at once is full
    UPDATE_PENDING = "update_pending"


FINE_CODES = frozenset({ReasonCode.UP_TO_DATE, ReasonCode.NO_RELEASE, ReasonCode.NOT_ASSIGNED})
"""The codes of an app that needs nothing; any other code makes its agent outdated."""


class _Reason(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    message: str


class UpToDate(_Reason):
    code: Literal[ReasonCode.UP_TO_DATE] = ReasonCode.UP_TO_DATE
    version: str
    channel: str


class NoRelease(_Reason):
    code: Literal[ReasonCode.NO_RELEASE] = ReasonCode.NO_RELEASE
    channel: str


class NotAssigned(_Reason):
    code: Literal[ReasonCode.NOT_ASSIGNED] = ReasonCode.NOT_ASSIGNED
    group: str


class Pinned(_Reason):
    """On the release its group's pin names, below the channel's newest."""

    code: Literal[ReasonCode.PINNED] = ReasonCode.PINNED
    group: str  # whose pin it is
    pin: str  # the spec as set: 2.2, 2.3.* or n-1
    version: str | None  # the release the pin names now (None: none matches, keeps what runs)


class Floor(_Reason):
    """Held at (or short of) the app's floor: no lower version may be installed any more."""

    code: Literal[ReasonCode.FLOOR] = ReasonCode.FLOOR
    floor: str  # the highest release of the app published with --floor
    pin: str | None  # the group's pin that the floor overrides, if any
    version: str | None  # what it is held at (None: nothing on its channel is allowed)


class NeverCheckedIn(_Reason):
    code: Literal[ReasonCode.NEVER_CHECKED_IN] = ReasonCode.NEVER_CHECKED_IN
    enrolled_at: datetime


class Offline(_Reason):
    code: Literal[ReasonCode.OFFLINE] = ReasonCode.OFFLINE
    since: datetime  # the last check-in the server recorded (written up to its flush bound late)
    after_s: float  # silent this long counts as offline for its group


class Failed(_Reason):
    code: Literal[ReasonCode.FAILED] = ReasonCode.FAILED
    error: str  # the agent's words
    log_tail: str
    target: str | None  # the version that failed, if the agent still says which


class AutoUpdateOff(_Reason):
    code: Literal[ReasonCode.AUTO_UPDATE_OFF] = ReasonCode.AUTO_UPDATE_OFF
    group: str
    available: str


class Updating(_Reason):
    code: Literal[ReasonCode.UPDATING] = ReasonCode.UPDATING
    phase: str  # the agent's words, e.g. "download 2.0"
    target: str | None


class Frozen(_Reason):
    code: Literal[ReasonCode.FROZEN] = ReasonCode.FROZEN
    until: datetime  # the fleet-wide freeze ends then (the message has the operator's words)
    next: datetime  # installs may start then (the group's windows allowing)


class OutsideWindow(_Reason):
    code: Literal[ReasonCode.OUTSIDE_WINDOW] = ReasonCode.OUTSIDE_WINDOW
    group: str
    next: datetime  # the next start of one of the group's windows at which it may install


class DeferredPrecondition(_Reason):
    code: Literal[ReasonCode.DEFERRED_PRECONDITION] = ReasonCode.DEFERRED_PRECONDITION
    precondition: str  # which one is unmet, in the agent's words


class Halted(_Reason):
    code: Literal[ReasonCode.HALTED] = ReasonCode.HALTED
    rollout: str  # the rollout's id


class WaitingWave(_Reason):
    code: Literal[ReasonCode.WAITING_WAVE] = ReasonCode.WAITING_WAVE
    rollout: str
    wave: int  # the host's wave, from 1


class ConcurrencyCap(_Reason):
    code: Literal[ReasonCode.CONCURRENCY_CAP] = ReasonCode.CONCURRENCY_CAP
    rollout: str


class UpdatePending(_Reason):
    code: Literal[ReasonCode.UPDATE_PENDING] = ReasonCode.UPDATE_PENDING
    desired: str


Reason = Annotated[
    UpToDate
    | NoRelease
    | NotAssigned
    | Pinned
    | Floor
    | NeverCheckedIn
    | Offline
    | Failed
    | AutoUpdateOff
    | Updating
    | Frozen
    | OutsideWindow
    | DeferredPrecondition
    | Halted
    | WaitingWave
    | ConcurrencyCap
    | UpdatePending,
    Field(discriminator="code"),
]
