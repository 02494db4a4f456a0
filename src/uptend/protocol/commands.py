"""Operator commands on the admin API: `uptend command send` and `uptend command list`."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from uptend.protocol import limits, names
from uptend.protocol.labels import KEY as LABEL_KEY
from uptend.protocol.labels import VALUE as LABEL_VALUE


class CommandAction(StrEnum):
    START = "start"
    STOP = "stop"  # lasts until `start`: the agent does not restart the app meanwhile
    RESTART = "restart"
    CHECK_NOW = "check-now"  # check in at once (and look for updates)
    RETRY = "retry"  # try again a version of the app that failed here (`fleet retry`)


class CommandState(StrEnum):
    PENDING = "pending"  # not yet acknowledged by the agent
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # not carried out: not delivered before its expiry


class _Admin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CommandSend(_Admin):
    """Whom to command: one agent (by name, or id with `by_id`), a group, or a label."""

    action: CommandAction
    agent: Annotated[str, StringConstraints(max_length=limits.MAX_AGENT_NAME)] | None = None
    by_id: bool = False
    group: Annotated[str, StringConstraints(pattern=rf"^{names.PATTERN}$")] | None = None
    label: Annotated[str, StringConstraints(pattern=rf"^{LABEL_KEY}={LABEL_VALUE}$")] | None = (
        Field(default=None, description="KEY=VALUE: every agent with this label")
    )
    app: Annotated[str, StringConstraints(pattern=rf"^{names.PATTERN}$")] | None = None
    expires_s: float | None = Field(default=None, gt=0, le=limits.MAX_SECONDS)


class CommandView(_Admin):
    id: int
    agent_id: str
    agent: str
    action: str
    app: str | None
    state: CommandState
    result: str
    sent_by: str
    created_at: datetime
    expires_at: datetime | None
    acked_at: datetime | None
