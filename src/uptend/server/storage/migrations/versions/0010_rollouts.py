"""Staged rollouts: channel plans, rollouts (compare-and-set state), per-host progress.

Revision ID: 0010
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("agent_apps") as batch:
        batch.add_column(
            sa.Column("restarts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_table(
        "channel_plans",
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("next_rollout", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app", "channel"),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("wave_opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("installing", sa.Integer(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollouts_app_channel", "rollouts", ["app", "channel", "started_at"])
    op.create_table(
        "rollout_hosts",
        sa.Column("rollout_id", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(32), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("previous", sa.String(64), nullable=True),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("healthy_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restarts_then", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rollout_id", "agent_id"),
    )


def downgrade() -> None:
    op.drop_table("rollout_hosts")
    op.drop_index("ix_rollouts_app_channel", table_name="rollouts")
    op.drop_table("rollouts")
    op.drop_table("channel_plans")
    with op.batch_alter_table("agent_apps") as batch:
        batch.drop_column("restarts")
