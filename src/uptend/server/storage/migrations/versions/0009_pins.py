"""Pins, floors and labels: a group's pin per app, releases published with --floor, labels.

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(
            sa.Column("floor", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "group_pins",
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("spec", sa.String(80), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group", "app"),
    )
    op.create_table(
        "agent_labels",
        sa.Column("agent_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(63), nullable=False),
        sa.Column("value", sa.String(63), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id", "key"),
    )
    op.create_index("ix_agent_labels_key_value", "agent_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_agent_labels_key_value", table_name="agent_labels")
    op.drop_table("agent_labels")
    op.drop_table("group_pins")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("floor")
