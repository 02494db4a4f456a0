"""What agents and the server say to each other: enrollment, check-in, directives, reports.

Everything an agent sends is bounded here (the limits live in `protocol.limits`), so the
server refuses it before anything is stored, alike on SQLite and PostgreSQL: names and
versions by pattern, free text by length and without NUL (JSON with a lone surrogate is not
valid JSON to pydantic), numbers finite and in range, times with a time zone and inside
`MIN_YEAR`..`MAX_YEAR` once in UTC (the form they are stored in).
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from uptend.errors import ConfigError
from uptend.protocol import limits, names, packages, versions
from uptend.protocol.labels import MAX_LABELS, parse_labels
from uptend.protocol.reasons import Outcome


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time needs a time zone (e.g. 2030-01-01T00:00:00Z)")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once in UTC") from None
    if not limits.MIN_YEAR <= value.year <= limits.MAX_YEAR:
        raise ValueError(f"the time must fall in the years {limits.MIN_YEAR}-{limits.MAX_YEAR}")
    return value


Name = Annotated[str, StringConstraints(pattern=rf"^{names.PATTERN}$")]
Version = Annotated[
    str, StringConstraints(max_length=limits.MAX_VERSION, pattern=rf"^{versions.PATTERN}$")
]


def _written(value: object) -> object:
    """A time on the wire is ISO 8601 text: pydantic would take a number as epoch seconds."""
    if not isinstance(value, str | datetime):
        raise ValueError("a time is an ISO 8601 string (e.g. 2030-01-01T00:00:00Z)")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_written), AfterValidator(_utc)]
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
ReasonText = Annotated[str, StringConstraints(max_length=limits.MAX_REASON, pattern=_NO_NUL)]
LogTail = Annotated[str, StringConstraints(max_length=limits.MAX_LOG_TAIL, pattern=_NO_NUL)]
Phase = Annotated[str, StringConstraints(pattern=rf"^[a-z_]{{1,{limits.MAX_PHASE}}}$")]
_AGENT_VERSION = rf"^[0-9A-Za-z][0-9A-Za-z.+!_\-]{{0,{limits.MAX_AGENT_VERSION - 1}}}$"
AgentVersion = Annotated[str, StringConstraints(pattern=_AGENT_VERSION)]
Count = Annotated[int, Field(ge=0, le=limits.MAX_INT)]
Seconds = Annotated[float, Field(ge=0, le=limits.MAX_SECONDS)]
PackageKind = Annotated[str, StringConstraints(pattern=rf"^{packages.KIND}$")]
PackageName = Annotated[str, StringConstraints(pattern=rf"^{packages.NAME}$")]
PackageVersion = Annotated[str, StringConstraints(pattern=rf"^{packages.VERSION}$")]
PackageFound = Annotated[str, StringConstraints(pattern=rf"^{packages.FOUND}$")]
# No control characters, no bidirectional overrides: a name is printed on operators' screens.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$"


class AppState(StrEnum):
    """What an agent reports about one app."""

    PENDING = "pending"  # assigned, nothing installed yet
    RUNNING = "running"
    UPDATING = "updating"  # downloading, switching or in probation
    DEFERRED = "deferred"  # an unmet precondition holds the update back
    FAILED = "failed"  # the last update of this app failed (reason says why)
    STOPPED = "stopped"  # the app's process is not running


class EnrollRequest(_Wire):
    token: Annotated[str, StringConstraints(max_length=limits.MAX_TOKEN, pattern=r"^[!-~]*$")]
    name: Annotated[str, StringConstraints(max_length=limits.MAX_AGENT_NAME, pattern=_PRINTABLE)]
    group: Name = "default"
    labels: list[str] = Field(default=[], max_length=MAX_LABELS, description="KEY=VALUE each")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        try:
            parse_labels(value)
        except ConfigError as e:
            raise ValueError(e.message) from None
        return value


class EnrollResponse(_Wire):
    agent_id: str
    credential: str
    root: str = Field(description="the TUF root (1.root.json) as UTF-8 JSON text")
    metadata_url: str
    targets_url: str
    poll_interval_s: float


class AppStatus(_Wire):
    app: Name
    version: Version | None = None
    state: AppState = AppState.PENDING
    target: Version | None = None  # the version being installed, if any
    reason: ReasonText = ""
    # While updating (all optional: older agents and servers leave them out or ignore them)
    phase: Phase | None = None  # fetching | staging | ready | activating | probation | rolling_back
    bytes_done: Count | None = None  # fetching: bytes of the target on disk so far
    bytes_total: Count | None = None  # fetching: the signed length
    probation_left_s: Seconds | None = None
    restarts: Count = 0  # crashes of the app since this version started (soak: any is a failure)
    config_version: Count | None = None  # the signed config version the app runs with
    config_bad: Count | None = None  # the newest config version refused or rolled back here
    # What is installed, and how (protocol/packages.py): the kind of the installed version;
    # for a package kind, its name, the version its manifest expects and the one the system's
    # package manager reports (None: not installed), read back while the app is settled
    kind: PackageKind | None = None
    package: PackageName | None = None
    package_expected: PackageVersion | None = None
    package_version: PackageFound | None = None


class Report(_Wire):
    """The outcome of one update attempt, sent with the next check-in."""

    app: Name
    version: Version
    outcome: Outcome
    reason: ReasonText = ""
    log_tail: LogTail = ""
    at: Timestamp


MAX_WAIT_S = 55.0  # the longest a server holds a long-poll (`/wait`) open


class CommandOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # not carried out: it arrived after its expires_at


class CommandAck(_Wire):
    """What became of one command (`Directives.commands`), sent until a check-in takes it."""

    id: Count
    state: CommandOutcome
    result: ReasonText = ""


class CheckIn(_Wire):
    agent_version: AgentVersion
    apps: list[AppStatus] = Field(default=[], max_length=limits.MAX_APPS)
    reports: list[Report] = Field(
        default=[], max_length=limits.MAX_REPORTS, description="the rest go with the next check-in"
    )
    generation: int | None = Field(
        default=None,
        ge=0,
        le=limits.MAX_INT,
        description="the generation of the directives the agent holds, if any",
    )
    valid_until: Timestamp | None = Field(
        default=None, description="the valid_until of the directives the agent holds, if any"
    )
    acks: list[CommandAck] = Field(
        default=[], max_length=limits.MAX_REPORTS, description="commands carried out, by id"
    )
    settings_version: Count | None = Field(
        default=None, description="the agent's own signed settings version applied here"
    )
    settings_bad: Count | None = Field(
        default=None,
        description="the newest version of the agent's settings refused or rolled back here",
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
    config_version: int | None = None  # the signed config the app should run with, if any
    config_target: str | None = None  # its TUF target (`<app>/_config/<N>`)


class Command(_Wire):
    """An operator's command (`uptend command send`): carry it out once, by id, then ack it."""

    id: int
    action: str  # start | stop | restart | check-now
    app: str | None = None  # None: every app of the agent
    expires_at: datetime | None = None  # not to be carried out after this


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
    commands: list[Command] = Field(
        default=[], description="operator commands not yet acknowledged (redelivered until then)"
    )
    settings_version: int | None = Field(
        default=None,
        description="the agent's own signed settings to run with (`config set uptend-agent`)",
    )
    settings_target: str | None = Field(
        default=None, description="their TUF target (`uptend-agent/_config/<N>`)"
    )
    retry_after_s: float | None = Field(
        default=None,
        ge=0,
        le=limits.MAX_POLL_S,
        description="the server is busy: check in again no sooner than this many seconds",
    )


class WaitRequest(_Wire):
    """A long-poll: answered at once when something changed for the agent, else at `wait_s`."""

    generation: int | None = Field(default=None, ge=0, le=limits.MAX_INT)
    wait_s: float = Field(default=MAX_WAIT_S, ge=0, le=MAX_WAIT_S)


class WaitAnswer(_Wire):
    ring: bool = Field(description="something changed: check in now")
