"""What a server process remembers between requests, and when it forgets.

Everything derived from the database that can change on an operator's command (credentials,
group plans) is kept under the generation it was read at and dropped when the generation
moves; every such change bumps the generation in its own transaction, so a process (or a
replica on the same PostgreSQL) sees it at the next request, with one primary-key read.
What agents report (`Known`) is not derived from operator data and outlives generations.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from uptend.policy.schedule import Schedule

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """A dict of at most `limit` entries; the oldest inserted goes first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        self._items.pop(key, None)
        if len(self._items) >= self.limit:
            del self._items[next(iter(self._items))]
        self._items[key] = value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class ByGeneration(Generic[K, V]):
    """A `Bounded` whose entries hold only for the newest generation seen."""

    def __init__(self, limit: int) -> None:
        self.generation = -1
        self._items: Bounded[K, V] = Bounded(limit)

    def get(self, generation: int, key: K) -> V | None:
        return self._items.get(key) if generation == self.generation else None

    def put(self, generation: int, key: K, value: V) -> None:
        if generation < self.generation:  # read before a change another request already saw
            return
        if generation > self.generation:
            self._items.clear()
            self.generation = generation
        self._items.put(key, value)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a credential belongs to: an admin token (`agent_id` None) or an agent."""

    actor: str  # for audit rows: admin#<token id> or agent:<name>
    agent_id: str | None = None
    group: str = ""
    token_id: int | None = None  # an admin token's id
    expires_at: datetime | None = None  # an admin token's expiry: checked on every request
    rotating: bool = False  # an agent to hand a new credential at this check-in


@dataclass(frozen=True, slots=True)
class AppPlan:
    app: str
    channel: str
    head: str | None  # the newest version on the channel, if any
    head_target: str | None
    critical: bool = False  # the head is a critical release


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """All a group's agents need to decide what to run: policy, assignments, channel heads."""

    name: str
    poll_interval_s: float
    auto_update: bool
    apps: tuple[AppPlan, ...]
    unchanged: bytes  # the serialized "keep what you have" answer of this plan's generation
    schedule: Schedule = field(default_factory=Schedule)  # judged against the clock per answer


@dataclass(frozen=True, slots=True)
class Known:
    """What this process last recorded (or verified) for one agent.

    `generation`: the rows were read or written at that generation, so no retry flag set
    before it is pending (setting one bumps the generation).
    """

    digest: bytes
    generation: int
    installed: dict[str, str | None]


CREDENTIALS_LIMIT = 200_000
AGENTS_LIMIT = 200_000
GROUPS_LIMIT = 10_000


@dataclass(slots=True)
class Memory:
    credentials: ByGeneration[str, Caller] = field(
        default_factory=lambda: ByGeneration(CREDENTIALS_LIMIT)
    )
    plans: ByGeneration[str, GroupPlan] = field(default_factory=lambda: ByGeneration(GROUPS_LIMIT))
    known: Bounded[str, Known] = field(default_factory=lambda: Bounded(AGENTS_LIMIT))
