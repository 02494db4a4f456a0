"""Delays between retries: exponential with full jitter, and jittered poll intervals.

Pure: the caller passes the random draw (0 <= rand < 1), so tests need no seeding.
"""


def retry_delay_s(attempt: int, *, base_s: float, cap_s: float, rand: float) -> float:
    """Delay before retry `attempt` (1-based): uniform in [base/2, min(cap, base*2^(attempt-1))].

    The cap keeps a transient fault from delaying an update by more than about one
    poll interval once it is gone.
    """
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    floor = min(base_s / 2, ceiling)
    return floor + (ceiling - floor) * rand


def jittered_s(interval_s: float, rand: float, *, spread: float = 0.1) -> float:
    """`interval_s` moved by up to ±spread, so a fleet started together does not poll in step."""
    return interval_s * (1 - spread + 2 * spread * rand)
