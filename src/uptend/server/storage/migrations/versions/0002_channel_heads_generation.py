"""Channel heads (newest release per app and channel) and the change generation.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from packaging.version import Version

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "channel_heads",
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("app", "channel"),
    )
    op.create_table(
        "generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    conn.execute(sa.text("INSERT INTO generation (id, value) VALUES (1, 1)"))
    heads: dict[tuple[str, str], tuple[Version, str, str]] = {}
    for app, channel, version, target in conn.execute(
        sa.text("SELECT app, channel, version, target FROM releases")
    ):
        key, parsed = (app, channel), Version(version)
        if key not in heads or parsed > heads[key][0]:
            heads[key] = (parsed, version, target)
    for (app, channel), (_, version, target) in heads.items():
        conn.execute(
            sa.text(
                "INSERT INTO channel_heads (app, channel, version, target)"
                " VALUES (:app, :channel, :version, :target)"
            ),
            {"app": app, "channel": channel, "version": version, "target": target},
        )


def downgrade() -> None:
    op.drop_table("generation")
    op.drop_table("channel_heads")
