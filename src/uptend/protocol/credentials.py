"""What the admin API and the CLI exchange about credentials: tokens and agents' own.

A token's secret is shown once, in `TokenCreated`; every other answer carries its id only.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MAX_EXPIRY_S = 10 * 365 * 86400.0
MAX_USES = 1_000_000_000


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TokenRole(StrEnum):
    ADMIN = "admin"  # the admin API
    ENROLL = "enroll"  # enrollment only: trades itself for an agent credential


class TokenState(StrEnum):
    LIVE = "live"
    REVOKED = "revoked"
    EXPIRED = "expired"
    USED_UP = "used_up"


class TokenCreate(_Wire):
    role: TokenRole
    name: str = Field(default="", max_length=128)
    group: str | None = Field(default=None, description="enroll: agents enroll into this group")
    expires_in_s: float | None = Field(default=None, gt=0, le=MAX_EXPIRY_S)
    max_uses: int | None = Field(default=None, ge=1, le=MAX_USES, description="enroll only")


class TokenInfo(_Wire):
    id: int
    role: TokenRole
    name: str
    group: str | None
    created_at: datetime
    last_used: datetime | None  # admin: written at most once a minute per server process
    uses: int | None  # enrollments made with it (None for admin tokens: not counted)
    max_uses: int | None
    expires_at: datetime | None
    revoked: bool
    state: TokenState


class TokenCreated(_Wire):
    token: str  # the secret: shown this once, stored only as a digest
    info: TokenInfo


class AgentRef(_Wire):
    """An agent an admin command acted on."""

    id: str
    name: str
    group: str
    revoked: bool
    rotating: bool  # a new credential waits for its next check-in
