"""Metadata lifetimes and the two rules on them: when to re-sign, when to warn.

Pure: no clock, no files (`now` is a parameter), so the rules are tested with any date.
- A role is re-signed once less than half of its lifetime is left (`due`). The server applies
  this at start and at every re-signing check, root included, for every role whose key it
  holds.
- A role whose key the server does not hold (the offline mode) cannot be re-signed there: it
  is reported loudly once less than `Expiry.warn_s` (30 days) is left (`warning`), in the
  server's log and in `uptend keys show`. An expired root or targets role holds back installs
  on every agent (docs/architecture.md promise 2): the warning says so, and what to run.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Expiry:
    """Metadata lifetimes in seconds, how long superseded metadata stays, when to warn.

    `targets_s` is also the lifetime of every app's role; `superseded_s` is the grace period
    for clients still fetching what an older timestamp.json names; `warn_s` is how long before
    an expiry the server cannot prevent it starts saying so.
    """

    root_s: int = 365 * 86400
    targets_s: int = 365 * 86400
    snapshot_s: int = 7 * 86400
    timestamp_s: int = 86400
    superseded_s: int = 15 * 60
    warn_s: int = 30 * 86400

    def of(self, role_type: str) -> timedelta:
        return timedelta(seconds=getattr(self, f"{role_type}_s"))


def due(expires: datetime, now: datetime, lifetime: timedelta) -> bool:
    """Whether metadata expiring at `expires` must be re-signed at `now`: under half its life."""
    return expires - now < lifetime / 2


def warning(role: str, expires: datetime, now: datetime, warn_before: timedelta) -> str | None:
    """The warning for role metadata nobody here can re-sign, or None while it is far off."""
    left = expires - now
    if left >= warn_before:
        return None
    when = "expired" if left <= timedelta(0) else f"expires in {_span(left)}"
    return (
        f"TUF {role} metadata {when} ({expires.isoformat(timespec='seconds')}) and its key is "
        "not on this server: agents will hold back every install once it has expired; renew it "
        "with `uptend keys renew DATA_DIR --keys DIR` where the offline keys are"
    )


def _span(left: timedelta) -> str:
    if left >= timedelta(days=2):
        return f"{left.days} days"
    return f"{max(1, round(left.total_seconds() / 3600))} hours"
