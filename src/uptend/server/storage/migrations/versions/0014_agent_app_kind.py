"""What each app is installed as: its install kind and, for a package, what dpkg/rpm report.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"

COLUMNS = (
    ("kind", 16),
    ("package", 100),
    ("package_expected", 140),
    ("package_version", 255),
)


def upgrade() -> None:
    with op.batch_alter_table("agent_apps") as batch:
        for name, length in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_apps") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
