"""When an app may be installed: maintenance windows, a fleet-wide freeze, critical releases.

One model, one pure function: `may_install(schedule, at=..., critical=...)` answers `Go` or a
typed `Wait` (why, until when, when installs may start). The server sends its answer in each
directive and the fleet view words the same answer; later gates (waves, caps) join it here.
Pure: `at` is a parameter; time zones come from the stdlib's tz database (`zoneinfo`, read
once per zone and cached by the stdlib, like any value type).

A window is a wall-clock range in a zone: "Sat,Sun 02:00-05:00 Europe/Berlin" is open every
Saturday and Sunday from when the clock there reads 02:00 until it reads 05:00. An end at or
before the start crosses midnight (the window belongs to the day it starts on). Days are
`Mon`..`Sun`, lists (`Sat,Sun`) and ranges (`Mon-Fri`, `Fri-Mon`), or `daily`; the zone is an
IANA name (default `UTC`). Across DST changes:

- an instant is inside when its wall-clock reading is in the range on one of the days, so a
  change of offset never cuts a window short: across fall-back 01:00-04:00 lasts four real
  hours and holds both readings of 02:00-03:00;
- a start or end the clock skips (spring-forward) is the moment of the jump; a start the
  clock reads twice is its first reading, an end its last;
- a window that lies wholly in the skipped hour (02:00-03:00 on the spring-forward night)
  would vanish that week: it opens at the jump for its nominal length instead, as cron runs
  the jobs of a skipped hour right after the jump.
"""

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from uptend.errors import ConfigError
from uptend.protocol.reasons import ReasonCode

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_MINUTES = 24 * 60
MAX_WINDOWS = 32  # per group
MAX_SPEC = 200  # characters of one window spec
_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")
_TIME = re.compile(r"(\d\d):(\d\d)")
_HINT = 'write DAYS HH:MM-HH:MM [ZONE], e.g. "Sat,Sun 02:00-05:00 Europe/Berlin"'
_CHAIN_LIMIT = 16  # windows that touch end to end, followed to find when they all close
WINDOW_WORDS = "outside maintenance window"
FROZEN_WORDS = "frozen until"
DEFERRED_WORDS = (WINDOW_WORDS, FROZEN_WORDS)
"""How a `Wait` message begins; an agent that defers on one says "deferred: <message>"."""


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight, 0..1439
    end: int  # minutes after midnight, 1..1440; at or before `start`: the next day
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def __str__(self) -> str:
        """The canonical spec, as stored and shown."""
        return f"{_days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)} {self.zone.key}"

    @property
    def length(self) -> timedelta:
        """The nominal length, in wall-clock minutes."""
        return timedelta(minutes=(self.end - self.start - 1) % DAY_MINUTES + 1)

    def occurrence(self, day: date) -> tuple[datetime, datetime]:
        """The window that starts on local date `day`, as UTC instants [open, close)."""
        midnight = datetime(day.year, day.month, day.day)  # noqa: DTZ001 - a wall-clock reading
        start = midnight + timedelta(minutes=self.start)
        opens = _first_reading(self.zone, start)
        closes = _last_reading(self.zone, start + self.length)
        if closes <= opens:  # wholly in a skipped hour: open at the jump for its length
            closes = opens + self.length
        return opens, closes

    def occurrences(self, at: datetime, days: int) -> Iterator[tuple[datetime, datetime]]:
        """The occurrences starting from the local day before `at` on, over `days` days."""
        today = at.astimezone(self.zone).date()
        for n in range(-1, days):
            day = today + timedelta(days=n)
            if day.weekday() in self.days:
                yield self.occurrence(day)


@dataclass(frozen=True, slots=True)
class Freeze:
    """A fleet-wide stop of installs, from `start` (None: now) until `until`."""

    until: datetime
    start: datetime | None = None
    reason: str = ""

    def active(self, at: datetime) -> bool:
        return (self.start is None or self.start <= at) and at < self.until


@dataclass(frozen=True, slots=True)
class Schedule:
    """What gates installs on one group: its windows (none: any time) and the freeze."""

    windows: tuple[Window, ...] = ()
    freeze: Freeze | None = None


@dataclass(frozen=True, slots=True)
class Go:
    """Install now. `until`: the answer may change then (a window closes, a freeze starts)."""

    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Do not install now (stage if you like).

    `until`: when this reason ends (the freeze's end; the next usable window start).
    `next_at`: the first instant at which installs may start, all gates allowing.
    """

    code: ReasonCode  # FROZEN or OUTSIDE_WINDOW
    message: str
    until: datetime
    next_at: datetime


Verdict = Go | Wait


def parse_window(spec: str) -> Window:
    """Parse "DAYS HH:MM-HH:MM [ZONE]"; a ConfigError names the part that is wrong."""
    where = f"window {spec[:MAX_SPEC]!r}"
    if len(spec) > MAX_SPEC:
        raise ConfigError(f"{where}... is over {MAX_SPEC} characters", hint=_HINT)
    parts = spec.split()
    if len(parts) not in (2, 3):
        raise ConfigError(f"{where}: expected days, a time range and a zone", hint=_HINT)
    days = _parse_days(parts[0], where)
    start, end = _parse_range(parts[1], where)
    zone = _parse_zone(parts[2] if len(parts) == 3 else "UTC", where)
    return Window(days, start, end, zone)


def parse_windows(specs: Sequence[str]) -> tuple[Window, ...]:
    if len(specs) > MAX_WINDOWS:
        raise ConfigError(
            f"{len(specs)} windows is over the limit of {MAX_WINDOWS} per group",
            hint="merge windows, e.g. one Mon-Fri window instead of five",
        )
    return tuple(parse_window(s) for s in specs)


def is_open(windows: Sequence[Window], at: datetime) -> bool:
    """Whether `at` lies in one of `windows`; no windows at all means any time."""
    if not windows:
        return True
    return any(o <= at < c for w in windows for o, c in w.occurrences(at, 1))


def next_open(windows: Sequence[Window], at: datetime) -> datetime:
    """The first instant at or after `at` inside one of `windows` (`at` itself when open)."""
    if is_open(windows, at):
        return at
    return min(o for w in windows for o, _ in w.occurrences(at, 8) if o > at)


def closes_at(windows: Sequence[Window], at: datetime) -> datetime | None:
    """When the open span holding `at` ends (None: never, there are no windows).

    Windows that touch or overlap are followed; after a long chain, the answer is a time no
    later than the real close (asking again then is harmless).
    """
    if not windows:
        return None
    t = at
    for _ in range(_CHAIN_LIMIT):
        ends = [c for w in windows for o, c in w.occurrences(t, 1) if o <= t < c]
        if not ends:
            break
        t = max(ends)
    return t


def may_install(schedule: Schedule, *, at: datetime, critical: bool = False) -> Verdict:
    """Whether an install may start at `at`; a critical release passes windows and freezes.

    When both hold a host back, the freeze is the reason given (the operator's explicit stop);
    `next_at` is still the first instant at which both allow.
    """
    if critical:
        return Go()
    windows, freeze = schedule.windows, schedule.freeze
    frozen = freeze is not None and freeze.active(at)
    if not frozen and is_open(windows, at):
        ends = [closes_at(windows, at)]
        if freeze is not None and freeze.start is not None and freeze.start > at:
            ends.append(freeze.start)
        return Go(min((e for e in ends if e is not None), default=None))
    next_at = next_open(windows, at)
    if freeze is not None and freeze.active(next_at):
        next_at = next_open(windows, freeze.until)
    if freeze is not None and frozen:
        said = f": {freeze.reason}" if freeze.reason else ""
        message = f"{FROZEN_WORDS} {_utc(freeze.until)}{said}"
        return Wait(ReasonCode.FROZEN, message, freeze.until, next_at)
    message = f"{WINDOW_WORDS} (next: {_utc(next_at)})"
    return Wait(ReasonCode.OUTSIDE_WINDOW, message, next_at, next_at)


# -- parsing ------------------------------------------------------------------------------------


def _parse_days(text: str, where: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.partition("-")
        a = _day(first, where)
        b = _day(last, where) if sep else a
        out.update((a + n) % 7 for n in range((b - a) % 7 + 1))
    return frozenset(out)


def _day(name: str, where: str) -> int:
    for i, day in enumerate(DAYS):
        if name.lower() == day.lower():
            return i
    raise ConfigError(
        f"{where}: unknown day {name!r}",
        hint=f"use {' '.join(DAYS)}, lists like Sat,Sun, ranges like Mon-Fri, or daily",
    )


def _parse_range(text: str, where: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not sep:
        raise ConfigError(f"{where}: {text!r} is not a time range", hint=_HINT)
    start = _minutes(first, where, end=False)
    end = _minutes(last, where, end=True)
    if start == end:
        raise ConfigError(
            f"{where}: the window starts and ends at {first}",
            hint="for a whole day use 00:00-24:00",
        )
    return start, end


def _minutes(text: str, where: str, *, end: bool) -> int:
    m = _TIME.fullmatch(text)
    if m is not None:
        hours, minutes = int(m[1]), int(m[2])
        if (hours < 24 and minutes < 60) or (end and (hours, minutes) == (24, 0)):
            return hours * 60 + minutes
    raise ConfigError(
        f"{where}: bad time {text!r}", hint="write times as HH:MM, 00:00 to 23:59 (an end: 24:00)"
    )


def _parse_zone(key: str, where: str) -> ZoneInfo:
    if _ZONE.fullmatch(key) and len(key) <= 64:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ConfigError(
        f"{where}: unknown time zone {key!r}",
        hint="use an IANA zone name such as Europe/Berlin, America/New_York or UTC",
    )


def _days_text(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "daily"
    runs: list[list[int]] = []
    for d in sorted(days):
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(
        f"{DAYS[r[0]]}-{DAYS[r[-1]]}" if len(r) > 2 else ",".join(DAYS[d] for d in r) for r in runs
    )


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _utc(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


# -- wall clock to instants -----------------------------------------------------------------------


def _first_reading(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first instant at which the clock in `zone` reads `wall` or later."""
    early, late = _readings(zone, wall)
    return early if early <= late else _jump(zone, late, early, wall)


def _last_reading(zone: ZoneInfo, wall: datetime) -> datetime:
    """The last instant at which the clock reads `wall` (a skipped reading: the jump)."""
    early, late = _readings(zone, wall)
    return late if early <= late else _jump(zone, late, early, wall)


def _readings(zone: ZoneInfo, wall: datetime) -> tuple[datetime, datetime]:
    """`wall` under the offset before (fold 0) and after (fold 1) a change, in UTC.

    Equal: an ordinary reading. fold 0 first: read twice (fall-back). fold 0 later: the clock
    skips `wall` (spring-forward), and the jump lies between the two.
    """
    before = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return before, after


def _jump(zone: ZoneInfo, lo: datetime, hi: datetime, wall: datetime) -> datetime:
    """The instant in (lo, hi] where the clock jumps past `wall`, to the second."""
    low, high = 0, int((hi - lo).total_seconds())  # offsets are whole seconds
    while high - low > 1:
        mid = (low + high) // 2
        if (lo + timedelta(seconds=mid)).astimezone(zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return lo + timedelta(seconds=high)
