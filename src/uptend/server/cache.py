"""What a server process remembers between requests, and when it forgets.

Everything derived from the database that can change on an operator's command is kept under
the counter it was read at and dropped when that counter moves: group plans under the
generation, credentials under the credentials counter (so a publish does not make every
agent's next check-in read its credential again). Every such change bumps its counter in
its own transaction, so a process (or a replica on the same PostgreSQL) sees it at the next
request, with one primary-key read of both counters. What agents report (`Known`) is not
derived from operator data and outlives generations.

Per-agent entries are stored as plain tuples of strings, bytes, ints and None, which the
garbage collector stops tracking after their first collection (it never untracks a named
tuple, a dataclass or a dict inside a tuple). A full collection walks every tracked object
while the event loop waits: 40,000 tracked entries for 20,000 agents paused it ~30 ms each
time, 100,000 agents would pause it ~150 ms. `Credentials` and `Agents` hand out and take
the named tuples and store the plain ones.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from uptend.policy.pins import Resolved
from uptend.policy.rollout import Plan as RolloutPlan
from uptend.policy.rollout import Rollout
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


class Caller(NamedTuple):
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
    # what a pin or the app's floor makes the group run instead of the head (None: the head),
    # resolved when the plan is built, so a check-in never looks at the releases
    resolved: Resolved | None = None
    resolved_target: str | None = None  # the signed target of resolved.version
    rollout: "HeadRollout | None" = None  # the head's staged rollout, while it holds hosts
    config: tuple[int, str] | None = None  # the group's config of the app: (version, target)


@dataclass(frozen=True, slots=True)
class HeadRollout:
    """A channel head's rollout as of the plan's generation (every transition bumps it)."""

    rollout: Rollout
    plan: RolloutPlan
    version: str
    cutoffs: tuple[str, ...] | None = None  # each wave's last rank; None: read each host's wave


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """All a group's agents need to decide what to run: policy, assignments, channel heads."""

    name: str
    poll_interval_s: float
    auto_update: bool
    apps: tuple[AppPlan, ...]
    unchanged: bytes  # the serialized "keep what you have" answer of this plan's generation
    schedule: Schedule = field(default_factory=Schedule)  # judged against the clock per answer
    settings: tuple[int, str] | None = None  # the agents' own signed settings: version, target


class Known(NamedTuple):
    """What this process last recorded (or verified) for one agent.

    `generation`: the rows were read or written at that generation, so no retry flag set
    before it is pending (setting one bumps the generation).
    """

    digest: bytes
    generation: int
    installed: dict[str, str | None]


_CallerRow = tuple[str, str | None, str, int | None, datetime | None, bool]  # Caller's fields
# Flat, as (digest, generation, app, version, app, version, ...): a tuple inside a tuple may
# outlive a collection still tracked, when the collector happens to look at the outer first.
_KnownRow = tuple[Any, ...]


class Credentials:
    """Callers by credential digest, held for the newest credentials counter seen."""

    def __init__(self, limit: int) -> None:
        self._items: ByGeneration[str, _CallerRow] = ByGeneration(limit)

    @property
    def generation(self) -> int:
        return self._items.generation  # the credentials counter, not the plans' generation

    def get(self, counter: int, digest: str) -> Caller | None:
        row = self._items.get(counter, digest)
        return None if row is None else Caller(*row)

    def put(self, counter: int, digest: str, caller: Caller) -> None:
        c = caller  # as a plain tuple (datetimes are never tracked)
        row = (c.actor, c.agent_id, c.group, c.token_id, c.expires_at, c.rotating)
        self._items.put(counter, digest, row)

    def __len__(self) -> int:
        return len(self._items)


class Agents:
    """What this process knows of each agent (`Known`), by agent id."""

    def __init__(self, limit: int) -> None:
        self._items: Bounded[str, _KnownRow] = Bounded(limit)

    def get(self, agent_id: str) -> Known | None:
        row = self._items.get(agent_id)
        if row is None:
            return None
        return Known(row[0], row[1], dict(zip(row[2::2], row[3::2], strict=True)))

    def put(self, agent_id: str, known: Known) -> None:
        row: list[Any] = [known.digest, known.generation]
        for app, version in known.installed.items():
            row += (app, version)
        self._items.put(agent_id, tuple(row))

    def __len__(self) -> int:
        return len(self._items)


CREDENTIALS_LIMIT = 200_000
AGENTS_LIMIT = 200_000
GROUPS_LIMIT = 10_000


@dataclass(slots=True)
class Memory:
    credentials: Credentials = field(default_factory=lambda: Credentials(CREDENTIALS_LIMIT))
    plans: ByGeneration[str, GroupPlan] = field(default_factory=lambda: ByGeneration(GROUPS_LIMIT))
    known: Agents = field(default_factory=lambda: Agents(AGENTS_LIMIT))
    # plans being read, by (group, generation): one read each, however many check-ins wait
    building: "dict[tuple[str, int], asyncio.Future[GroupPlan]]" = field(default_factory=dict)
