"""Maintenance window specs computed from the clock: shut now, or open now."""

from datetime import UTC, datetime, timedelta

from uptend.policy.schedule import DAYS


def window_from(start_in: timedelta, length: timedelta, now: datetime | None = None) -> str:
    """A one-day UTC window spec that opens `start_in` from now (negative: opened already)."""
    start = (now or datetime.now(UTC)) + start_in
    start = start.replace(second=0, microsecond=0)
    end = start + length
    return f"{DAYS[start.weekday()]} {start:%H:%M}-{end:%H:%M} UTC"


def shut_now() -> str:
    """A window that opens in three hours: shut for the whole test."""
    return window_from(timedelta(hours=3), timedelta(hours=1))


def open_now() -> str:
    """A window that opened a minute ago and stays open for two hours."""
    return window_from(timedelta(minutes=-1), timedelta(hours=2))
