"""Directives under a schedule, pure: holds, critical heads and until when an answer holds."""

from datetime import UTC, datetime, timedelta

from uptend.policy.schedule import Freeze, Schedule, parse_window
from uptend.server.cache import AppPlan, GroupPlan
from uptend.server.services.directives import directives_for

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)  # a Monday, 12:00 UTC


def plan(schedule: Schedule, *, critical: bool = False) -> GroupPlan:
    return GroupPlan(
        name="web",
        poll_interval_s=30.0,
        auto_update=True,
        apps=(
            AppPlan("a", "stable", "2.0", "a/2.0/a.tar.gz", critical),
            AppPlan("b", "stable", "1.0", "b/1.0/b.tar.gz"),
        ),
        unchanged=b"",
        schedule=schedule,
    )


def test_outside_a_window_an_install_is_held_until_it_opens() -> None:
    shut = Schedule((parse_window("Mon 14:00-15:00 UTC"),))
    d = directives_for(plan(shut), {"a": "1.0", "b": "1.0"}, generation=1, retry=[], now=NOW)
    a, b = d.apps
    assert (a.version, a.hold, a.hold_until) == ("2.0", "outside_window", NOW + timedelta(hours=2))
    assert a.reason == "outside maintenance window (next: 2026-01-05 14:00:00 UTC)"
    assert (b.hold, b.hold_until) == (None, None)  # b runs its head already: nothing to gate
    assert d.valid_until == NOW + timedelta(hours=2)


def test_inside_a_window_the_answer_holds_until_it_closes() -> None:
    open_now = Schedule((parse_window("Mon 11:00-13:00 UTC"),))
    d = directives_for(plan(open_now), {"a": "1.0"}, generation=1, retry=[], now=NOW)
    assert d.apps[0].hold is None
    assert d.valid_until == NOW + timedelta(hours=1)
    up_to_date = directives_for(
        plan(open_now), {"a": "2.0", "b": "1.0"}, generation=1, retry=[], now=NOW
    )
    assert up_to_date.valid_until is None  # nothing to install: the clock changes nothing


def test_a_freeze_holds_every_install_and_says_until_when() -> None:
    frozen = Schedule(freeze=Freeze(until=NOW + timedelta(days=1), reason="release freeze"))
    d = directives_for(plan(frozen), {}, generation=1, retry=[], now=NOW)
    assert [(x.hold, x.hold_until) for x in d.apps] == [("frozen", NOW + timedelta(days=1))] * 2
    assert d.apps[0].reason == "frozen until 2026-01-06 12:00:00 UTC: release freeze"


def test_a_critical_head_passes_a_freeze_and_a_closed_window() -> None:
    both = Schedule((parse_window("Sun 01:00-02:00 UTC"),), Freeze(until=NOW + timedelta(days=3)))
    d = directives_for(plan(both, critical=True), {"a": "1.0"}, generation=1, retry=[], now=NOW)
    a, b = d.apps
    assert (a.critical, a.hold) == (True, None)
    assert (b.critical, b.hold) == (False, "frozen")
    assert d.valid_until == NOW + timedelta(days=5, hours=13)  # b: the Sunday after the freeze
