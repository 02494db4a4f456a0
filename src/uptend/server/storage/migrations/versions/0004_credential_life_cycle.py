"""Credentials with a life cycle: tokens that are named, bound to a group, expire or run out
of uses; agents that can be revoked and whose credential can be rotated.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name", sa.String(length=128), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("group", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("max_uses", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("uses", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_used", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("rotate_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("pending_credential_hash", sa.String(length=64), nullable=True)
        )
        batch_op.create_index(
            "ix_agents_pending_credential", ["pending_credential_hash"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_pending_credential")
        batch_op.drop_column("pending_credential_hash")
        batch_op.drop_column("rotate_requested_at")
        batch_op.drop_column("revoked_at")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("last_used")
        batch_op.drop_column("uses")
        batch_op.drop_column("max_uses")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("group")
        batch_op.drop_column("name")
