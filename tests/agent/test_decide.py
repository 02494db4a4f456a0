"""The one decision point, pure: (directive, plan, facts) in, next plan and one move out."""

from dataclasses import replace

import pytest

from uptend.agent.decide import (
    MAX_PENDING,
    Abandon,
    Activate,
    Facts,
    Found,
    Held,
    Look,
    LookupFailed,
    Nothing,
    Refused,
    Update,
    decide,
    delivered,
    fetch_retry_at,
    outcome,
    report,
    retry,
)
from uptend.agent.machine import Hold, HoldState, Pending, Phase, Plan, Report
from uptend.agent.wire import AppDirective

NOW = 1000.0
KINDS = frozenset({"bundle"})


def want(version: str | None, *, pinned: bool = False) -> AppDirective:
    target = None if version is None else f"demo/{version}/demo-{version}.tar.gz"
    return AppDirective(app="demo", version=version, pinned=pinned, target=target)


def facts(lookup: Found | LookupFailed | None = None, now: float = NOW) -> Facts:
    return Facts(now=now, rand=0.5, poll_s=60.0, kinds=KINDS, lookup=lookup)


def found(version: str = "2.0", **changes: object) -> Found:
    base = Found(f"demo/{version}/demo-{version}.tar.gz", "demo", version, "bundle")
    return replace(base, **changes)  # type: ignore[arg-type]


ON_1 = Plan(current="1.0")


def test_a_new_version_is_looked_up_then_updated() -> None:
    assert decide(want("2.0"), ON_1, facts()) == (
        ON_1,
        Look("2.0", "demo/2.0/demo-2.0.tar.gz"),
    )
    assert decide(want("2.0"), ON_1, facts(found())) == (ON_1, Update("2.0"))


def test_the_running_version_or_no_version_needs_nothing_and_clears_a_hold() -> None:
    held = replace(ON_1, hold=Hold("2.0", HoldState.FAILED, "x"))
    assert decide(want("1.0"), held, facts()) == (ON_1, Nothing())
    assert decide(want(None), held, facts()) == (ON_1, Nothing())
    assert decide(want(None), ON_1, facts()) == (ON_1, Nothing())


def test_nothing_starts_while_an_update_is_in_progress() -> None:
    busy = Plan(Phase.PROBATION, current="1.0", target="2.0", attempts=1)
    assert decide(want("3.0"), busy, facts()) == (busy, Nothing())


def test_a_fetch_is_abandoned_when_the_directive_moves_on_but_kept_when_it_does_not() -> None:
    fetching = Plan(Phase.FETCHING, current="1.0", target="2.0", attempts=1)
    assert decide(want("3.0"), fetching, facts()) == (fetching, Abandon())
    assert decide(want("1.0"), fetching, facts()) == (fetching, Abandon())
    assert decide(want("2.0"), fetching, facts()) == (fetching, Nothing())
    assert decide(want(None), fetching, facts()) == (fetching, Nothing())


def test_a_version_that_failed_here_is_held_without_a_new_report() -> None:
    bad = replace(ON_1, bad=("2.0",), failure="exited with code 3")
    plan, move = decide(want("2.0"), bad, facts())
    assert move == Held("2.0 failed here: exited with code 3", 0.0)
    assert plan.hold == Hold("2.0", HoldState.FAILED, "2.0 failed here: exited with code 3")
    assert plan.pending == ()
    assert decide(want("2.0"), plan, facts()) == (plan, move)  # idle: the same plan, no write


def test_going_down_needs_a_pin_and_is_reported_once() -> None:
    plan, move = decide(want("0.9"), ON_1, facts())
    why = "refused to go down from 1.0 to 0.9 without an operator pin"
    assert move == Refused(why)
    assert [(p.outcome, p.reason) for p in plan.pending] == [("refused", why)]
    again, move = decide(want("0.9"), plan, facts())
    assert (again, move) == (plan, Refused(why))
    assert decide(want("0.9", pinned=True), ON_1, facts())[1] == Look(
        "0.9", "demo/0.9/demo-0.9.tar.gz"
    )


def test_a_transient_lookup_fault_backs_off_quietly_and_longer_each_time() -> None:
    plan, move = decide(want("2.0"), ON_1, facts(LookupFailed("unreachable", transient=True)))
    assert isinstance(move, Held)
    assert plan.pending == ()
    assert plan.hold is not None
    first = plan.hold.until - NOW
    assert (plan.hold.failures, plan.hold.state) == (1, HoldState.FAILED)
    # during the backoff nothing happens, not even a look-up
    assert decide(want("2.0"), plan, facts(now=plan.hold.until - 0.1)) == (
        plan,
        Held("unreachable", plan.hold.until),
    )
    later = facts(LookupFailed("unreachable", transient=True), now=plan.hold.until)
    plan, _ = decide(want("2.0"), plan, later)
    assert plan.hold is not None
    assert plan.hold.failures == 2
    assert plan.hold.until - later.now > first


def test_a_target_that_does_not_verify_is_refused_and_retried_later() -> None:
    plan, move = decide(want("2.0"), ON_1, facts(LookupFailed("expired", transient=False)))
    assert move == Refused("expired")
    assert [p.outcome for p in plan.pending] == ["refused"]
    assert plan.hold is not None
    assert plan.hold.until > NOW


def test_a_signed_target_for_another_release_is_refused() -> None:
    _plan, move = decide(want("2.0"), ON_1, facts(found(version="2.1")))
    assert move == Refused(
        "signed target demo/2.1/demo-2.1.tar.gz describes another release (demo 2.1)"
    )


def test_a_pinned_version_below_the_signed_floor_is_refused_and_retried_later() -> None:
    # the release key marked 0.9 below the floor 1.0: a pin (or a forged one) cannot send it
    plan, move = decide(want("0.9", pinned=True), ON_1, facts(found("0.9", floor="1.0")))
    why = "0.9 is below the floor 1.0 signed for demo"
    assert move == Refused(why)
    assert [(p.outcome, p.version, p.reason) for p in plan.pending] == [("refused", "0.9", why)]
    assert plan.current == "1.0"
    assert plan.hold is not None
    assert plan.hold.until > NOW  # looked up again later: the floor may only rise
    # the floor itself, or a release marked with a lower floor, is fine
    assert decide(want("2.0"), ON_1, facts(found(floor="2.0")))[1] == Update("2.0")


def test_an_unknown_kind_is_refused_by_name() -> None:
    plan, move = decide(want("2.0"), ON_1, facts(found(kind="msi")))
    assert move == Refused("kind 'msi' is not supported by this agent")
    assert plan.pending[0].reason == "kind 'msi' is not supported by this agent"


def test_an_unmet_precondition_defers_and_says_so_once() -> None:
    plan, move = decide(want("2.0"), ON_1, facts(found(unmet="a reboot is pending")))
    assert move == Held("deferred: a reboot is pending", 0.0)
    assert plan.hold == Hold("2.0", HoldState.DEFERRED, "deferred: a reboot is pending")
    assert [p.outcome for p in plan.pending] == ["deferred"]
    again, _ = decide(want("2.0"), plan, facts(found(unmet="a reboot is pending")))
    assert again == plan
    assert decide(want("2.0"), plan, facts(found()))[1] == Update("2.0")


def test_a_hold_for_another_version_does_not_delay_this_one() -> None:
    held = replace(ON_1, hold=Hold("1.5", HoldState.FAILED, "x", until=NOW + 99, failures=3))
    assert decide(want("2.0"), held, facts(found()))[1] == Update("2.0")
    plan, _ = decide(want("2.0"), held, facts(LookupFailed("down", transient=True)))
    assert plan.hold is not None
    assert (plan.hold.version, plan.hold.failures) == ("2.0", 1)


def test_outcomes_record_the_report_and_the_hold() -> None:
    done = outcome(ON_1, Report("installed", "2.0"), facts())
    assert (done.hold, [p.outcome for p in done.pending]) == (None, ["installed"])
    bad = replace(ON_1, bad=("2.0",))
    held = outcome(bad, Report("rolled_back", "2.0", "crashed"), facts())
    assert held.hold == Hold("2.0", HoldState.FAILED, "crashed")
    transient = outcome(ON_1, Report("failed", "2.0", "disk full"), facts())
    assert transient.hold is not None
    assert (transient.hold.failures, transient.hold.until > NOW) == (1, True)
    again = outcome(transient, Report("failed", "2.0", "disk full"), facts())
    assert len(again.pending) == 1  # the same fault again is said once
    assert again.hold is not None
    assert again.hold.failures == 2


def test_the_operator_retry_forgets_failures_holds_and_what_was_said() -> None:
    plan = Plan(
        current="1.0",
        bad=("2.0",),
        failure="x",
        hold=Hold("2.0", HoldState.FAILED, "x"),
        said="rolled_back 2.0 x",
    )
    assert retry(plan) == Plan(current="1.0")


def test_pending_reports_are_bounded_and_dropped_once_delivered() -> None:
    plan = ON_1
    for n in range(MAX_PENDING + 5):
        plan = report(plan, "refused", "2.0", f"reason {n}", at=float(n))
    assert len(plan.pending) == MAX_PENDING
    assert plan.pending[-1] == Pending("refused", "2.0", f"reason {MAX_PENDING + 4}", "", 24.0)
    assert delivered(plan, 0) is plan
    assert delivered(plan, 3).pending == plan.pending[3:]


@pytest.mark.parametrize("tries", [0, 1, 5])
def test_a_cut_fetch_resumes_after_the_shared_backoff(tries: int) -> None:
    plan = Plan(Phase.FETCHING, current="1.0", target="2.0", attempts=1, tries=tries)
    delay = fetch_retry_at(plan, facts()) - NOW
    assert 1.0 <= delay <= 60.0


WINDOW = "outside maintenance window (next: 2026-01-05 14:00:00 UTC)"


def held_by_window(version: str | None) -> AppDirective:
    return replace(want(version), hold="outside_window", reason=WINDOW)


def test_a_held_directive_is_fetched_and_staged_but_waits() -> None:
    plan, move = decide(held_by_window("2.0"), ON_1, facts(found()))
    assert (plan.waiting, move) == (f"deferred: {WINDOW}", Update("2.0"))
    fetching = replace(plan, phase=Phase.FETCHING, target="2.0", attempts=1)
    assert decide(held_by_window("2.0"), fetching, facts()) == (fetching, Nothing())
    cleared, move = decide(want("2.0"), fetching, facts())  # the window opened meanwhile
    assert (cleared.waiting, move) == ("", Nothing())


def test_a_staged_target_waits_while_held_saying_so_once_then_activates() -> None:
    ready = Plan(Phase.READY, current="1.0", target="2.0", attempts=1)
    plan, move = decide(held_by_window("2.0"), ready, facts())
    assert move == Held(f"deferred: {WINDOW}", 0.0)
    assert [(p.outcome, p.version, p.reason) for p in plan.pending] == [("deferred", "2.0", WINDOW)]
    again, _ = decide(held_by_window("2.0"), plan, facts())
    assert again.pending == plan.pending  # said once
    frozen = replace(want("2.0"), hold="frozen")  # an older server's words: the code
    assert decide(frozen, ready, facts())[0].waiting == "deferred: frozen"
    assert decide(want("2.0"), plan, facts()) == (plan, Activate())


def test_a_staged_target_the_directive_moved_away_from_is_abandoned() -> None:
    ready = Plan(Phase.READY, current="1.0", target="2.0", attempts=1, waiting="deferred: x")
    assert decide(want("3.0"), ready, facts()) == (ready, Abandon())
    assert decide(want(None), ready, facts()) == (ready, Abandon())
