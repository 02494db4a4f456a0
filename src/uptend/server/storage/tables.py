"""The schema, as typed SQLAlchemy tables. Migrations in `migrations/` must match it (tested)."""

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ReleaseRow(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("app", "version", name="uq_releases_app_version"),
        Index("ix_releases_app_channel", "app", "channel"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), unique=True)
    length: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    critical: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # published with --floor: no lower version of the app installs any more (migration 0009)
    floor: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ChannelHeadRow(Base):
    """The newest release of each (app, channel), kept at publish: no check-in scans releases."""

    __tablename__ = "channel_heads"
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))


class GenerationRow(Base):
    """Two counters, each bumped in the transaction of every change it stands for.

    `value` (the generation): what agents should run. `credentials`: who may call (a revoked,
    removed or rotating agent, a revoked token). Each server process caches what it derived
    from the database under the counter it read; a replica sharing the database sees a change
    with one primary-key read of both.
    """

    __tablename__ = "generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    value: Mapped[int] = mapped_column(Integer)
    credentials: Mapped[int] = mapped_column(Integer, server_default="1")


class GroupRow(Base):
    __tablename__ = "groups"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    poll_interval_s: Mapped[float] = mapped_column(Float)
    auto_update: Mapped[bool] = mapped_column(Boolean)


class GroupAppRow(Base):
    __tablename__ = "group_apps"
    __table_args__ = (Index("ix_group_apps_app", "app"),)  # fleet list --app
    group: Mapped[str] = mapped_column(
        String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # admin | enroll
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(128), default="", server_default="")
    group: Mapped[str | None] = mapped_column(String(64), nullable=True)  # enroll: agents go here
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)  # enroll only
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # enrollments
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AgentRow(Base):
    __tablename__ = "agents"
    __table_args__ = (
        Index("ix_agents_group_name", "group", "name"),  # fleet list --group, in page order
        Index("ix_agents_last_seen", "last_seen"),
        Index("ix_agents_pending_credential", "pending_credential_hash", unique=True),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    group: Mapped[str] = mapped_column(String(64), ForeignKey("groups.name"))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # `agent rotate-credential`: set until the agent first uses the credential handed over;
    # the pending digest is the one handed over last (each check-in with the old one gets a
    # new one, since only digests are stored).
    rotate_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pending_credential_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AgentAppRow(Base):
    __tablename__ = "agent_apps"
    __table_args__ = (Index("ix_agent_apps_app_state", "app", "state"),)  # --app, by state
    agent_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    installed: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    retry: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # app crashes
    # how the installed version is installed, and its package as the agent read it back
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    package: Mapped[str | None] = mapped_column(String(100), nullable=True)
    package_expected: Mapped[str | None] = mapped_column(String(140), nullable=True)
    package_version: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ReportRow(Base):
    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_agent_at", "agent_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(32), ForeignKey("agents.id", ondelete="CASCADE"))
    app: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    log_tail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_at", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)


# -- the schedule: maintenance windows per group, the fleet-wide freeze (migration 0007) --------


class GroupWindowRow(Base):
    """One maintenance window of a group, as its canonical spec ("Sat,Sun 02:00-05:00 UTC")."""

    __tablename__ = "group_windows"
    group: Mapped[str] = mapped_column(
        String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[str] = mapped_column(String(200))


class FreezeRow(Base):
    """The fleet-wide freeze, if one is set: at most one row (id 1)."""

    __tablename__ = "freeze"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- pins and labels (migration 0009) ---------------------------------------------------------


class GroupPinRow(Base):
    """A group's pin of one app: a canonical spec (`2.2`, `2.3.*`, `n-1`), resolved per plan."""

    __tablename__ = "group_pins"
    group: Mapped[str] = mapped_column(
        String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[str] = mapped_column(String(80))


class AgentLabelRow(Base):
    """One label of an agent (`zone=eu-1`): given at enrollment, changed by `fleet label`."""

    __tablename__ = "agent_labels"
    __table_args__ = (Index("ix_agent_labels_key_value", "key", "value"),)  # --label k=v
    agent_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(63))


# -- staged rollouts: channel plans, rollouts, each host's progress (migration 0010) ------------


class ChannelPlanRow(Base):
    """A channel's rollout plan; without one, a release goes to every host at once."""

    __tablename__ = "channel_plans"
    app: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan: Mapped[str] = mapped_column(Text)  # the plan as JSON (protocol.ChannelPlan)
    next_rollout: Mapped[str] = mapped_column(String(32))  # the id the next rollout takes
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RolloutRow(Base):
    """One rollout of a release on a channel; `state_version` is its compare-and-set counter."""

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_app_channel", "app", "channel", "started_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(Text)  # the channel's plan when it started
    state: Mapped[str] = mapped_column(String(16))
    state_version: Mapped[int] = mapped_column(Integer)
    wave: Mapped[int] = mapped_column(Integer)  # the open wave, from 0
    wave_opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    installing: Mapped[int] = mapped_column(Integer, default=0)  # slots taken (max_concurrent)
    max_concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the plan's cap
    cutoffs: Mapped[str] = mapped_column(Text, default="")  # JSON: each wave's last rank (0013)


class RolloutHostRow(Base):
    """One host's wave and progress in a rollout: its wave is fixed when the rollout starts."""

    __tablename__ = "rollout_hosts"
    rollout_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    wave: Mapped[int] = mapped_column(Integer)
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)  # revert target
    told_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    healthy_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    restarts_then: Mapped[int] = mapped_column(Integer, default=0)
    slot: Mapped[bool] = mapped_column(Boolean, default=False)  # holds an installing slot
    outcome: Mapped[str] = mapped_column(String(16), default="")  # succeeded | failed, once done
    slot_labels: Mapped[str] = mapped_column(
        Text, default=""
    )  # JSON [[key, value]] taken (held while slot)


class RolloutSlotRow(Base):
    """Hosts of a rollout installing per label value (`zone=eu-1`): its per-label cap's count."""

    __tablename__ = "rollout_slots"
    rollout_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(63), primary_key=True)
    installing: Mapped[int] = mapped_column(Integer, default=0)
    cap: Mapped[int] = mapped_column(Integer)  # the plan's cap for the key (the fleet view's)


# -- operator commands (migration 0011) -------------------------------------------------------


class CommandRow(Base):
    """One `uptend command send` to one agent; its id is also the notification sequence."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_agent_state", "agent_id", "state"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(32), ForeignKey("agents.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    app: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | done | failed | expired
    result: Mapped[str] = mapped_column(Text, default="")
    sent_by: Mapped[str] = mapped_column(String(64))  # admin#<token id>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConfigRow(Base):
    """One version of an app's configuration document, signed as TUF target `target`."""

    __tablename__ = "app_configs"
    __table_args__ = (UniqueConstraint("app", "version", name="uq_app_configs_app_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    group: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: every group
    target: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rollback_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
