"""What every use case needs: settings, the database, the TUF repository, process memory."""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from uptend.server.cache import Memory
from uptend.server.generation import GenerationReader
from uptend.server.lastseen import LastSeen
from uptend.server.notify import Hub
from uptend.server.ratelimit import Guard
from uptend.server.settings import Settings
from uptend.server.stats import CheckinCounters
from uptend.server.storage.db import Database
from uptend.server.storage.generation_read import Counters
from uptend.server.tuf_repo import TufRepo


@dataclass(slots=True)
class EvaluatorCounts:
    """The rollout evaluator's passes, and how many of them read the database."""

    passes: int = 0
    queried: int = 0
    moved: int = 0


@dataclass(slots=True)
class Context:
    settings: Settings
    db: Database
    repo: TufRepo
    lastseen: LastSeen
    generation: GenerationReader[Counters]  # both counters, one read per burst of requests
    guard: Guard  # rate limits and failure counts of this process
    hub: Hub  # held long-polls, and the agents with commands pending
    # Publishing bumps TUF metadata versions: one at a time per process (TufRepo also
    # holds a file lock for several processes on one data dir).
    publish_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    memory: Memory = field(default_factory=Memory)
    checkins: CheckinCounters = field(default_factory=CheckinCounters)
    evaluator: EvaluatorCounts = field(default_factory=EvaluatorCounts)


def utcnow() -> datetime:
    return datetime.now(UTC)
