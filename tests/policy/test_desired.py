"""Which version an agent should run, and the jittered delays: pure, no fixtures."""

import pytest

from uptend.policy.backoff import jittered_s, retry_delay_s
from uptend.policy.desired import Decision, desired_version, is_outdated


def decide(releases: list[str], installed: str | None, *, auto: bool = True) -> Decision:
    return desired_version(
        app="demo",
        channel="stable",
        group="web",
        releases=releases,
        installed=installed,
        auto_update=auto,
    )


def test_newest_release_of_the_channel_is_desired() -> None:
    assert decide(["1.0", "2.0rc1", "1.10"], "1.0") == Decision(
        "2.0rc1", "newest on channel stable"
    )
    assert decide(["1.9", "1.10"], None).version == "1.10"  # PEP 440 order, not text order


def test_no_release_yet_keeps_what_runs() -> None:
    decision = decide([], "1.0")
    assert decision.version == "1.0"
    assert "no release of demo on channel stable" in decision.reason


def test_auto_update_off_installs_once_then_stays() -> None:
    assert decide(["1.0"], None, auto=False).version == "1.0"
    held = decide(["1.0", "2.0"], "1.0", auto=False)
    assert held.version == "1.0"
    assert "automatic updates are off for group web" in held.reason
    assert "2.0 is available" in held.reason
    assert decide(["1.0"], "1.0", auto=False).reason == "newest on channel stable"


def test_outdated_means_not_on_the_newest_release() -> None:
    assert is_outdated("1.0", "2.0")
    assert is_outdated(None, "2.0")
    assert not is_outdated("2.0", "2.0")
    assert not is_outdated("1.0", None)


@pytest.mark.parametrize("attempt", [1, 2, 3, 10, 50])
@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_retry_delay_grows_and_stays_capped(attempt: int, rand: float) -> None:
    delay = retry_delay_s(attempt, base_s=2.0, cap_s=60.0, rand=rand)
    assert 1.0 <= delay <= min(60.0, 2.0 * 2 ** (attempt - 1))


def test_retry_delay_with_a_cap_below_the_base() -> None:
    assert retry_delay_s(1, base_s=10.0, cap_s=1.0, rand=0.5) == 1.0


def test_jitter_spreads_polls_by_ten_percent() -> None:
    assert jittered_s(60.0, 0.0) == pytest.approx(54.0)
    assert jittered_s(60.0, 0.5) == pytest.approx(60.0)
    assert jittered_s(60.0, 1.0) == pytest.approx(66.0)
