"""What agents and the server say to each other: enrollment, check-in, directives, reports."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AppState(StrEnum):
    """What an agent reports about one app."""

    PENDING = "pending"  # assigned, nothing installed yet
    RUNNING = "running"
    UPDATING = "updating"  # downloading, switching or in probation
    DEFERRED = "deferred"  # an unmet precondition holds the update back
    FAILED = "failed"  # the last update of this app failed (reason says why)
    STOPPED = "stopped"  # the app's process is not running


class EnrollRequest(_Wire):
    token: str
    name: str
    group: str = "default"


class EnrollResponse(_Wire):
    agent_id: str
    credential: str
    root: str = Field(description="the TUF root (1.root.json) as UTF-8 JSON text")
    metadata_url: str
    targets_url: str
    poll_interval_s: float


class AppStatus(_Wire):
    app: str
    version: str | None = None
    state: AppState = AppState.PENDING
    target: str | None = None  # the version being installed, if any
    reason: str = ""
    # While updating (all optional: older agents and servers leave them out or ignore them)
    phase: str | None = None  # fetching | staging | ready | activating | probation | rolling_back
    bytes_done: int | None = None  # fetching: bytes of the target on disk so far
    bytes_total: int | None = None  # fetching: the signed length
    probation_left_s: float | None = None


class Report(_Wire):
    """The outcome of one update attempt, sent with the next check-in."""

    app: str
    version: str
    outcome: str  # installed | failed | rolled_back | rollback_failed | deferred | refused
    reason: str = ""
    log_tail: str = ""
    at: datetime


class CheckIn(_Wire):
    agent_version: str
    apps: list[AppStatus] = []
    reports: list[Report] = []
    generation: int | None = Field(
        default=None, description="the generation of the directives the agent holds, if any"
    )
    valid_until: datetime | None = Field(
        default=None, description="the valid_until of the directives the agent holds, if any"
    )


class AppDirective(_Wire):
    app: str
    version: str | None  # None: keep what runs (auto-update off and nothing new to install)
    pinned: bool = False  # an operator pin: the agent may go down to this version
    target: str | None = None  # the signed TUF target of `version` (None: an older server)
    reason: str = ""
    critical: bool = False  # a critical release: installed at once, windows and freezes pass
    hold: str | None = None  # a reason code (outside_window, frozen): stage, but install nothing
    hold_until: datetime | None = None  # while held: when installs may start (look again then)


class Directives(_Wire):
    poll_interval_s: float
    apps: list[AppDirective] = []
    retry: list[str] = Field(default=[], description="apps whose failed versions may be retried")
    generation: int | None = Field(
        default=None, description="the server's change generation these directives were made at"
    )
    unchanged: bool = Field(
        default=False,
        description="the agent's directives still hold (apps and retry are empty): keep them",
    )
    credential: str | None = Field(
        default=None,
        description="a new credential for this agent (after `uptend agent rotate-credential`):"
        " store it, then use it; the old one works until the new one is first used",
    )
    valid_until: datetime | None = Field(
        default=None,
        description="the answer changes then (a window opens or closes, a freeze starts or"
        " ends): echo it in check-ins; a server answers in full once it has passed",
    )
