"""Counters a running server exposes (GET /api/v1/server/stats): what the check-in costs.

Statements are counted by the Database's cursor listener, so a test or the bench counts the
writes of an idle check-in instead of assuming them. The garbage collector's figures show
whether the start-up heap is frozen and how many full collections (event-loop pauses) ran.
"""

import gc
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class CheckinCounters:
    total: int = 0
    unchanged: int = 0  # answered "keep what you have"
    recorded: int = 0  # wrote something (state, reports, retry, first sighting)

    def as_json(self) -> dict[str, int]:
        return {"total": self.total, "unchanged": self.unchanged, "recorded": self.recorded}


def snapshot(
    statements: dict[str, int], checkins: CheckinCounters, lastseen: Any, caches: dict[str, int]
) -> dict[str, Any]:
    return {
        "statements": dict(statements),
        "checkins": checkins.as_json(),
        "lastseen": {
            "pending": len(lastseen.pending),
            "flushes": lastseen.flushes,
            "rows": lastseen.rows,
            "interval_s": lastseen.interval_s,
        },
        "caches": caches,
        "gc": {
            "frozen": gc.get_freeze_count(),
            "full_collections": gc.get_stats()[2]["collections"],
        },
    }
