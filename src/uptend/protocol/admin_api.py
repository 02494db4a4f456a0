"""What the admin API and the CLI exchange: releases, groups, the fleet."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from uptend.protocol.agent_api import AppState, Name
from uptend.protocol.reasons import Reason


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class Release(_Wire):
    app: str
    version: str
    channel: str
    target: str
    length: int
    sha256: str
    created_at: datetime
    critical: bool = False  # installs at once: passes maintenance windows and freezes
    floor: bool = False  # published with --floor: no lower version of the app installs any more


class GroupSet(_Wire):
    app: Name | None = None
    channel: Name = "stable"
    poll_interval_s: float | None = Field(default=None, ge=1, le=86400)
    auto_update: bool | None = None
    windows: list[str] | None = Field(
        default=None,
        description='maintenance windows, e.g. "Sat,Sun 02:00-05:00 Europe/Berlin";'
        " [] clears them (any time), None leaves them as they are",
    )
    pin: str | None = Field(
        default=None,
        max_length=80,
        description="with app: pin it to an exact version (2.2), a prefix (2.3.*) or n-1",
    )
    unpin: bool = False  # with app: remove its pin


class GroupApp(_Wire):
    app: str
    channel: str
    pin: str | None = None  # the operator's pin spec, if any


class Group(_Wire):
    name: str
    poll_interval_s: float
    auto_update: bool
    apps: list[GroupApp] = []
    windows: list[str] = []  # maintenance windows, canonical; none: installs at any time


class PackageView(_Wire):
    """A package kind's package on one host, as its package manager reported it."""

    name: str
    version: str | None  # as dpkg-query / rpm -q report it; None: not installed
    expected: str  # what the installed release's manifest declares
    drift: str | None = None  # e.g. "installed by hand: 2.1-3, expected 2.0-1"; None: none


class AgentApp(_Wire):
    app: str
    installed: str | None
    desired: str | None
    newest: str | None = None
    state: AppState
    reason: Reason
    log_tail: str = ""
    critical: bool = False  # the newest release is critical
    stopped_by_operator: bool = False  # stopped by `uptend command send ... stop` until `start`
    kind: str | None = None  # the install kind of the installed version, as the agent says
    package: PackageView | None = None  # for a package kind (deb, rpm, apt), once read back


class Agent(_Wire):
    id: str
    name: str
    group: str
    last_seen: datetime | None
    agent_version: str | None
    outdated: bool
    apps: list[AgentApp] = []
    revoked: bool = False  # `uptend agent revoke`: its credential is refused
    labels: dict[str, str] = {}  # given at enrollment, changed by `uptend fleet label`


class AgentPage(_Wire):
    """One page of `GET /api/v1/agents`: pass `next_cursor` back to get the next one."""

    agents: list[Agent]
    total: int  # agents matching the filters, over all pages
    next_cursor: str | None
    last_seen_max_lag_s: float  # last_seen is written in batches, up to this late


class LabelChange(_Wire):
    """`KEY=VALUE` sets a label, `KEY-` removes one."""

    labels: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        min_length=1, max_length=64
    )


class ReportView(_Wire):
    app: str
    version: str
    outcome: str  # an Outcome, unless an agent sent a word this server does not know
    reason: str
    log_tail: str
    at: datetime


class AgentDetail(_Wire):
    agent: Agent
    reports: list[ReportView]


class AppSummary(_Wire):
    """One app across the fleet: versions installed, share on the desired one, codes."""

    app: str
    agents: int
    versions: dict[str, int]  # installed version ("none": nothing installed) -> agents
    on_desired: int
    share_on_desired: float  # on_desired / agents
    reasons: dict[str, int]  # reason code -> agents


class FleetSummary(_Wire):
    agents: int
    outdated: int
    apps: list[AppSummary]


class FreezeSet(_Wire):
    """A fleet-wide stop of installs; critical releases still pass."""

    start: datetime | None = None  # None: from now
    until: datetime
    reason: str = Field(default="", max_length=200)


class FreezeView(_Wire):
    start: datetime | None
    until: datetime
    reason: str
    set_at: datetime
    active: bool  # in force now (not yet started, or ended: False)
