"""The schedule: maintenance windows per group, the fleet-wide freeze, critical releases.

Revision ID: 0007
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(
            sa.Column("critical", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "group_windows",
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group", "position"),
    )
    op.create_table(
        "freeze",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("freeze")
    op.drop_table("group_windows")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("critical")
