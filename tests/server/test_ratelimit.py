"""The token buckets, with the clock passed in: bursts, refill, bounded memory."""

from uptend.server.ratelimit import Limiter, Rate


def test_a_burst_is_allowed_then_one_event_per_refill() -> None:
    limiter = Limiter(Rate(3, per_s=60.0))
    for _ in range(3):
        assert limiter.retry_after_s("a", 0.0) == 0
        limiter.spend("a", 0.0)
    assert limiter.retry_after_s("a", 0.0) == 20  # one event comes back every 20 s
    assert limiter.retry_after_s("a", 19.5) == 1
    assert limiter.retry_after_s("a", 20.0) == 0
    assert limiter.retry_after_s("b", 0.0) == 0  # other keys are not affected


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    limiter = Limiter(Rate(2, per_s=10.0))
    limiter.spend("a", 0.0)
    for _ in range(2):
        limiter.spend("a", 1000.0)  # a long quiet time refills only up to the burst
    assert limiter.retry_after_s("a", 1000.0) == 5


def test_zero_means_no_limit() -> None:
    limiter = Limiter(Rate(0))
    for _ in range(1000):
        limiter.spend("a", 0.0)
    assert limiter.retry_after_s("a", 0.0) == 0
    assert len(limiter) == 0


def test_memory_is_bounded_and_forgets_the_least_recent_first() -> None:
    limiter = Limiter(Rate(1), max_keys=3)
    for key in ("a", "b", "c", "d"):
        limiter.spend(key, 0.0)
    assert len(limiter) == 3
    assert limiter.retry_after_s("a", 0.0) == 0  # forgotten: a full bucket again
    assert limiter.retry_after_s("d", 0.0) > 0
