"""Token buckets per key (a source address, a token id): how often a caller may fail or enroll.

Pure: the caller passes `now` (monotonic seconds), so the rules are tested without a clock.
In memory, per server process: N replicas allow N times the rate (documented in the README);
a restart forgets every bucket. Memory is bounded: at most `max_keys` buckets, the least
recently touched dropped first (a dropped bucket is a full one, so a flood of new addresses
can only forget limits, never block anyone who did nothing).
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

from uptend.server.cache import Bounded

TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Rate:
    """`burst` events at once, refilled at `burst` per `per_s` seconds; burst 0: no limit."""

    burst: int
    per_s: float = 60.0

    @property
    def unlimited(self) -> bool:
        return self.burst <= 0


class Limiter:
    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: (level, at)

    def _level(self, key: str, now: float) -> float:
        level, at = self._buckets.get(key, (float(self.rate.burst), now))
        refill = (now - at) * self.rate.burst / self.rate.per_s
        return min(float(self.rate.burst), level + max(0.0, refill))

    def retry_after_s(self, key: str, now: float) -> int:
        """0 if `key` may go on now, else whole seconds until it may (for Retry-After)."""
        if self.rate.unlimited or key not in self._buckets:
            return 0
        missing = 1.0 - self._level(key, now)
        if missing <= 0:
            return 0
        return max(1, math.ceil(missing * self.rate.per_s / self.rate.burst))

    def spend(self, key: str, now: float) -> None:
        """Count one event against `key` (a failure, an enrollment)."""
        if self.rate.unlimited:
            return
        self._buckets[key] = (max(0.0, self._level(key, now) - 1.0), now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class Limits:
    failures: Rate = Rate(60)  # failed authentications, per source address and per token id
    enrollments: Rate = Rate(1200)  # enrollments (good or bad), per source address


class Guard:
    """The limiters and counters of one server process (`GET /api/v1/server/stats`)."""

    def __init__(self, limits: Limits, max_keys: int = 100_000) -> None:
        self.by_address = Limiter(limits.failures, max_keys)
        self.by_token = Limiter(limits.failures, max_keys)
        self.enrollments = Limiter(limits.enrollments, max_keys)
        self.failures: dict[str, int] = {}  # by reason: missing, unknown, revoked, expired, ...
        self.limited = 0  # answered 429 to an authentication
        self.enroll_limited = 0  # answered 429 to an enrollment
        self.lookups = 0  # credentials looked up in the database (not in this process's memory)
        # digest -> token:<id> / agent:<id> of credentials refused for good (revoked, expired,
        # used up): their next try is limited before any database read
        self.refused: Bounded[str, str] = Bounded(max_keys)
        self._touched: Bounded[int, float] = Bounded(max_keys)  # admin token id -> last write

    def touch_due(self, token_id: int, now: float) -> bool:
        """Whether to write an admin token's last use now: at most once a minute each."""
        last = self._touched.get(token_id)
        if last is not None and now - last < TOUCH_EVERY_S:
            return False
        self._touched.put(token_id, now)
        return True

    def failed(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def as_json(self) -> dict[str, object]:
        return {
            "failures": sum(self.failures.values()),
            "failures_by_reason": dict(sorted(self.failures.items())),
            "rate_limited": self.limited,
            "enroll_rate_limited": self.enroll_limited,
            "credential_lookups": self.lookups,
            "tracked_addresses": len(self.by_address),
            "tracked_tokens": len(self.by_token),
        }
