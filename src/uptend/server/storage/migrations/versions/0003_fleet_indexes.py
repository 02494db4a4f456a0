"""Indexes for the fleet view's filters: by group in page order, by app, by app and state.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.drop_index("ix_agents_group", table_name="agents")
    op.create_index("ix_agents_group_name", "agents", ["group", "name"])
    op.create_index("ix_group_apps_app", "group_apps", ["app"])
    op.create_index("ix_agent_apps_app_state", "agent_apps", ["app", "state"])


def downgrade() -> None:
    op.drop_index("ix_agent_apps_app_state", table_name="agent_apps")
    op.drop_index("ix_group_apps_app", table_name="group_apps")
    op.drop_index("ix_agents_group_name", table_name="agents")
    op.create_index("ix_agents_group", "agents", ["group"])
