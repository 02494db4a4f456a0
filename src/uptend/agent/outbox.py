"""Reports an agent of journal schema 1 left in state/outbox.json.

New reports travel in each app's journal plan (recorded with the plan that made them, in
one atomic write). The old file is sent once with the first check-in, then removed.
"""

import json

from uptend.agent import wire
from uptend.agent.layout import Layout
from uptend.agent.wire import Report


def legacy(layout: Layout) -> list[Report]:
    try:
        raw = json.loads(layout.outbox.read_bytes())
        return wire.from_json(list[Report], raw)
    except (OSError, ValueError, RecursionError):  # WireError is a ValueError
        return []


def drop_legacy(layout: Layout) -> None:
    layout.outbox.unlink(missing_ok=True)
