"""Which version an agent should run, why, and the jittered delays: pure, no fixtures."""

from datetime import UTC, datetime
from typing import Any

import pytest

from uptend.policy.backoff import jittered_s, retry_delay_s
from uptend.policy.desired import (
    LAST_SEEN_MAX_LAG_S,
    AppFacts,
    Decision,
    desired_version,
    explain,
    is_outdated,
    offline_after_s,
)
from uptend.policy.pins import Resolved
from uptend.policy.rollout import Held
from uptend.policy.schedule import Wait
from uptend.protocol import AppState, ReasonCode


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


NEXT = datetime(2026, 1, 3, 2, tzinfo=UTC)


def facts(**overrides: Any) -> AppFacts:
    base: dict[str, Any] = {
        "app": "demo",
        "group": "web",
        "auto_update": True,
        "assigned": True,
        "channel": "stable",
        "head": "2.0",
        "installed": "1.0",
        "state": AppState.RUNNING,
        "target": None,
        "said": "",
        "log_tail": "",
        "last_seen": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "enrolled_at": datetime(2026, 1, 1, tzinfo=UTC),
        "offline_after_s": 190.0,
        "wait": Wait(ReasonCode.OUTSIDE_WINDOW, "outside maintenance window", NEXT, NEXT),
        "held": Held("r1", 1, "waiting for wave 2: opens after wave 1 soaks"),
    }
    return AppFacts(**{**base, **overrides})


def test_offline_allows_three_polls_and_the_last_seen_flush_bound() -> None:
    assert LAST_SEEN_MAX_LAG_S == 10.0
    assert offline_after_s(60.0) == 190.0


@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_code_is_explained_with_its_details(code: ReasonCode) -> None:
    held = Resolved("1.5", pinned=True, code=ReasonCode.FLOOR, message="held at 1.5")
    more = {"resolved": held, "pin": "1.2", "floor": "1.5"}
    reason = explain(code, facts(said="", log_tail="boom", **more))
    assert reason.code is code
    assert reason.message
    dumped = reason.model_dump(mode="json")
    assert dumped["code"] == code.value
    assert set(dumped) >= {"code", "message"}


def test_the_agents_words_are_the_message_where_its_state_decides() -> None:
    said = "deferred: a reboot is pending"
    deferred = explain(ReasonCode.DEFERRED_PRECONDITION, facts(said=said))
    assert (deferred.message, deferred.precondition) == (said, "a reboot is pending")  # type: ignore[union-attr]
    failed = explain(ReasonCode.FAILED, facts(said="2.0 was rolled back", log_tail="fatal"))
    assert failed.model_dump() == {
        "code": ReasonCode.FAILED,
        "message": "2.0 was rolled back",
        "error": "2.0 was rolled back",
        "log_tail": "fatal",
        "target": None,
    }
    held = explain(ReasonCode.AUTO_UPDATE_OFF, facts(auto_update=False, said="ignored"))
    assert held.message == "automatic updates are off for group web (2.0 is available)"
    offline = explain(ReasonCode.OFFLINE, facts())
    assert offline.message == "offline since 2026-01-02 03:04:05 UTC"


def test_desired_follows_the_policy() -> None:
    assert facts().desired() == "2.0"
    assert facts(auto_update=False).desired() == "1.0"  # held
    assert facts(auto_update=False, installed=None).desired() == "2.0"  # install once
    assert facts(head=None).desired() == "1.0"  # nothing published: keep what runs
    assert facts(assigned=False, channel="", head=None).desired() == "1.0"


def test_schedule_reasons_carry_when_installs_may_start() -> None:
    frozen = explain(ReasonCode.FROZEN, facts(wait=Wait(ReasonCode.FROZEN, "frozen", NEXT, NEXT)))
    assert frozen.model_dump() == {
        "code": ReasonCode.FROZEN,
        "message": "frozen",
        "until": NEXT,
        "next": NEXT,
    }
    window = explain(ReasonCode.OUTSIDE_WINDOW, facts())
    assert window.model_dump() == {
        "code": ReasonCode.OUTSIDE_WINDOW,
        "message": "outside maintenance window",
        "group": "web",
        "next": NEXT,
    }
