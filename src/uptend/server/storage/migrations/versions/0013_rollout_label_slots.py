"""Per-label concurrency slots of staged rollouts, and the wave cut-offs late hosts join by.

`rollout_slots` counts the hosts installing per (label key, value) of a rollout, taken with a
conditional UPDATE like the overall count in `rollouts.installing`; `rollout_hosts.slot_labels`
remembers which ones a host holds, so freeing them does not depend on labels changed since.
`rollouts.cutoffs` is the hash rank of each wave's last host at the start: a host enrolled
later falls into the wave its own rank puts it in.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.create_table(
        "rollout_slots",
        sa.Column("rollout_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(63), nullable=False),
        sa.Column("value", sa.String(63), nullable=False),
        sa.Column("installing", sa.Integer(), nullable=False),
        sa.Column("cap", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rollout_id", "key", "value"),
    )
    with op.batch_alter_table("rollout_hosts") as batch:
        batch.add_column(
            sa.Column("slot_labels", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(
            sa.Column("cutoffs", sa.Text(), nullable=False, server_default=sa.text("''"))
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("cutoffs")
    with op.batch_alter_table("rollout_hosts") as batch:
        batch.drop_column("slot_labels")
    op.drop_table("rollout_slots")
