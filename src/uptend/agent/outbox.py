"""Reports an agent of journal schema 1 left in state/outbox.json.

New reports travel in each app's journal plan (recorded with the plan that made them, in
one atomic write). The old file is sent once with the first check-in, then removed.
"""

from pydantic import TypeAdapter

from uptend.agent.layout import Layout
from uptend.protocol import Report

_REPORTS = TypeAdapter(list[Report])


def legacy(layout: Layout) -> list[Report]:
    try:
        return _REPORTS.validate_json(layout.outbox.read_bytes())
    except (OSError, ValueError):
        return []


def drop_legacy(layout: Layout) -> None:
    layout.outbox.unlink(missing_ok=True)
