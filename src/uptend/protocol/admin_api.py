"""What the admin API and the CLI exchange: releases, groups, the fleet."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from uptend.protocol.agent_api import AppState


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Release(_Wire):
    app: str
    version: str
    channel: str
    target: str
    length: int
    sha256: str
    created_at: datetime


class GroupSet(_Wire):
    app: str | None = None
    channel: str = "stable"
    poll_interval_s: float | None = Field(default=None, ge=1, le=86400)
    auto_update: bool | None = None


class GroupApp(_Wire):
    app: str
    channel: str


class Group(_Wire):
    name: str
    poll_interval_s: float
    auto_update: bool
    apps: list[GroupApp] = []


class AgentApp(_Wire):
    app: str
    installed: str | None
    desired: str | None
    newest: str | None = None
    state: AppState
    reason: str = ""
    log_tail: str = ""


class Agent(_Wire):
    id: str
    name: str
    group: str
    last_seen: datetime | None
    agent_version: str | None
    outdated: bool
    apps: list[AgentApp] = []


class ErrorBody(_Wire):
    error: str
    message: str
    hint: str = ""
