"""What the admin API and the CLI exchange about staged rollouts: plans, rollouts, previews."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from uptend.protocol.agent_api import Name


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class ChannelPlan(_Wire):
    """A channel's rollout plan (`uptend channel set`); the defaults are today's behaviour."""

    waves: list[float] = Field(default=[100.0], min_length=1, max_length=20)  # cumulative %
    soak_s: float = Field(default=0.0, ge=0)
    max_failure_rate: float = Field(default=1.0, ge=0, le=1)
    min_sample: int = Field(default=1, ge=1, le=1_000_000)
    max_concurrent: int | None = Field(default=None, ge=1, le=1_000_000)
    max_concurrent_per_label: dict[Name, int] = Field(default_factory=dict, max_length=16)
    on_halt: Literal["revert", "hold"] = "revert"
    report_deadline_s: float = Field(default=3600.0, gt=0)
    splay_s: float = Field(default=0.0, ge=0)


class ChannelPlanView(_Wire):
    app: str
    channel: str
    plan: ChannelPlan
    staged: bool  # False: no plan set, a release goes to every host at once


class WaveView(_Wire):
    """One wave of a rollout and where its hosts are (counts by phase)."""

    wave: int  # from 1
    percent: float
    hosts: int
    open: bool
    succeeded: int = 0
    failed: int = 0
    soaking: int = 0
    installing: int = 0
    deferred: int = 0
    waiting: int = 0


class LabelSlotsView(_Wire):
    """One label value's hosts installing now, against its `--max-concurrent-per-label` cap."""

    key: str
    value: str
    installing: int
    cap: int


class RolloutView(_Wire):
    id: str
    app: str
    channel: str
    version: str
    state: str  # running, paused, halted, completed, aborted, superseded
    state_version: int
    wave: int  # the open wave, from 1
    reason: str  # why it is in this state (the halt's reason, ...)
    started_at: datetime
    ended_at: datetime | None
    plan: ChannelPlan
    waves: list[WaveView]
    per_label: list[LabelSlotsView] = []  # each label value that took a slot, by key and value


class PreviewWave(_Wire):
    wave: int  # from 1
    percent: float
    agents: list[str]  # agent names, in rank order


class PreviewView(_Wire):
    app: str
    channel: str
    rollout: str  # the id the next rollout on this channel will take
    waves: list[PreviewWave]
