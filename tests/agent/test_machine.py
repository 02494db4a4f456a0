"""The update state machine, pure: events in, actions out, no fixtures."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptend.agent.machine import (
    MAX_ATTEMPTS,
    Abandoned,
    Cleared,
    Directed,
    Event,
    Failed,
    Fetch,
    Fetched,
    Healthy,
    Hold,
    HoldState,
    IllegalTransitionError,
    Pending,
    Phase,
    Plan,
    Probe,
    Report,
    Stage,
    Staged,
    Switched,
    SwitchTo,
    allow_retry,
    is_settled,
    resume,
    step,
)


def run(plan: Plan, *events: Event) -> tuple[Plan, object]:
    action: object = None
    for event in events:
        plan, action = step(plan, event)
    return plan, action


def test_happy_update_commits_the_new_version() -> None:
    plan, action = step(Plan(current="1.0"), Directed("2.0"))
    assert (plan.phase, action) == (Phase.FETCHING, Fetch("2.0"))
    plan, action = step(plan, Fetched())
    assert (plan.phase, action) == (Phase.STAGING, Stage("2.0"))
    plan, action = step(plan, Staged())
    assert (plan.phase, action) == (Phase.ACTIVATING, SwitchTo("2.0"))
    plan, action = step(plan, Switched())
    assert (plan.phase, action, plan.attempts) == (Phase.PROBATION, Probe("2.0"), 1)
    plan, action = step(plan, Healthy())
    assert plan == Plan(Phase.IDLE, current="2.0")
    assert action == Report("installed", "2.0")


def test_directed_to_the_running_version_does_nothing() -> None:
    plan = Plan(current="1.0")
    assert step(plan, Directed("1.0")) == (plan, None)


def test_unhealthy_new_version_is_rolled_back_and_reported() -> None:
    plan, _ = run(Plan(current="1.0"), Directed("2.0"), Fetched(), Staged(), Switched())
    plan, action = step(plan, Failed("health probe exited 3", release_at_fault=True))
    assert action == SwitchTo("1.0", verify=True)
    assert plan.phase is Phase.ROLLING_BACK
    plan, action = step(plan, Switched())
    assert plan == Plan(Phase.IDLE, current="1.0", failure="health probe exited 3", bad=("2.0",))
    assert action == Report("rolled_back", "2.0", "health probe exited 3")


def test_a_failed_version_is_not_tried_again_until_the_operator_allows_it() -> None:
    plan, _ = run(
        Plan(current="1.0"),
        Directed("2.0"),
        Fetched(),
        Staged(),
        Switched(),
        Failed("crash"),
        Switched(),
    )
    assert step(plan, Directed("2.0")) == (plan, None)
    plan = allow_retry(plan)
    assert plan.bad == ()
    assert step(plan, Directed("2.0"))[1] == Fetch("2.0")
    # a newer release is tried even while 2.0 stays bad
    bad = Plan(current="1.0", bad=("2.0",))
    assert step(bad, Directed("2.1"))[1] == Fetch("2.1")


def test_download_failure_is_retryable_and_not_held_against_the_release() -> None:
    plan, action = run(Plan(current="1.0"), Directed("2.0"), Failed("connection reset"))
    assert plan == Plan(Phase.IDLE, current="1.0", failure="connection reset")
    assert action == Report("failed", "2.0", "connection reset")
    assert step(plan, Directed("2.0"))[1] == Fetch("2.0")


def test_invalid_manifest_in_a_signed_release_holds_it_back() -> None:
    plan, action = run(
        Plan(current="1.0"), Directed("2.0"), Fetched(), Failed("bad manifest", True)
    )
    assert plan.bad == ("2.0",)
    assert isinstance(action, Report)
    assert action.outcome == "failed"


def test_a_rollback_whose_old_version_fails_too_is_reported_and_keeps_it() -> None:
    """docs/faults.md E38: the last good version stays current (never deleted)."""
    plan, _ = run(Plan(current="1.0"), Directed("2.0"), Fetched(), Staged(), Switched())
    plan, _ = step(plan, Failed("2.0 crashed"))
    plan, action = step(plan, Failed("1.0 exited 4", log_tail="1.0 broke"))
    assert plan.phase is Phase.IDLE
    assert (plan.current, plan.bad) == ("1.0", ("2.0",))
    assert isinstance(action, Report)
    assert action.outcome == "rollback_failed"
    assert action.reason == "2.0 crashed; then the rollback to 1.0 failed: 1.0 exited 4"
    assert action.log_tail == "1.0 broke"


def test_first_install_that_fails_leaves_no_current() -> None:
    plan, _ = run(Plan(), Directed("1.0"), Fetched(), Staged(), Switched())
    plan, action = step(plan, Failed("exited 3"))
    assert action == SwitchTo(None)
    plan, action = step(plan, Switched())
    assert plan.current is None
    assert plan.bad == ("1.0",)
    assert action == Report("failed", "1.0", "exited 3")


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.FETCHING, Fetch("2.0")),
        (Phase.STAGING, Stage("2.0")),
        (Phase.ACTIVATING, SwitchTo("2.0")),
    ],
)
def test_resume_repeats_the_interrupted_step_and_counts_it(phase: Phase, expected: object) -> None:
    plan = Plan(phase, current="1.0", target="2.0", attempts=1)
    assert resume(plan) == (replace(plan, attempts=2), expected)


def test_an_interrupted_rollback_is_repeated_for_ever() -> None:
    plan = Plan(Phase.ROLLING_BACK, current="1.0", target="2.0", attempts=99)
    assert resume(plan) == (plan, SwitchTo("1.0", verify=True))


@pytest.mark.parametrize("phase", [Phase.FETCHING, Phase.STAGING])
def test_dying_at_the_same_fetch_step_holds_the_release_back(phase: Phase) -> None:
    """docs/faults.md D35: a state loop marks the release bad for this host and reports it."""
    plan, _ = step(Plan(current="1.0"), Directed("2.0"))
    if phase is Phase.STAGING:
        plan, _ = step(plan, Fetched())
    assert plan.attempts == 1
    for attempt in range(2, MAX_ATTEMPTS + 1):
        plan, _ = resume(plan)
        assert plan.attempts == attempt
    plan, action = resume(plan)
    reason = f"the agent died {MAX_ATTEMPTS} times while {phase} 2.0"
    assert plan == Plan(Phase.IDLE, current="1.0", failure=reason, bad=("2.0",))
    assert action == Report("failed", "2.0", reason)


def test_dying_while_switching_rolls_back() -> None:
    plan = Plan(Phase.ACTIVATING, current="1.0", target="2.0", attempts=MAX_ATTEMPTS)
    plan, action = resume(plan)
    assert plan.phase is Phase.ROLLING_BACK
    assert plan.failure == f"interrupted {MAX_ATTEMPTS} times during activating"
    assert action == SwitchTo("1.0", verify=True)


def test_resume_when_idle_does_nothing() -> None:
    assert resume(Plan(current="1.0")) == (Plan(current="1.0"), None)


def test_interrupted_probation_runs_again_then_the_loop_breaker_rolls_back() -> None:
    plan = Plan(Phase.PROBATION, current="1.0", target="2.0", attempts=1)
    for attempt in range(2, MAX_ATTEMPTS + 1):
        plan, action = resume(plan)
        assert (plan.attempts, action) == (attempt, Probe("2.0"))
    plan, action = resume(plan)
    assert plan.phase is Phase.ROLLING_BACK
    assert action == SwitchTo("1.0", verify=True)
    assert "interrupted" in plan.failure


@pytest.mark.parametrize(
    ("plan", "event"),
    [
        (Plan(current="1.0"), Healthy()),
        (Plan(current="1.0"), Switched()),
        (Plan(Phase.FETCHING, "1.0", "2.0"), Directed("3.0")),
        (Plan(Phase.PROBATION, "1.0", "2.0"), Staged()),
        (Plan(Phase.ROLLING_BACK, "1.0", "2.0"), Healthy()),
    ],
)
def test_illegal_events_are_bugs(plan: Plan, event: Event) -> None:
    with pytest.raises(IllegalTransitionError):
        step(plan, event)


def test_a_phase_without_target_is_a_bug() -> None:
    with pytest.raises(IllegalTransitionError):
        resume(Plan(Phase.FETCHING, current="1.0"))


EVENTS = st.one_of(
    st.sampled_from(["1.0", "2.0", "3.0"]).map(Directed),
    st.just(Fetched()),
    st.just(Staged()),
    st.just(Switched()),
    st.just(Healthy()),
    st.builds(Failed, st.sampled_from(["x", "y"]), st.booleans()),
    st.just(Cleared()),
    st.just("crash"),
    st.just("hold"),  # the directive's hold flips (decide keeps plan.waiting in step)
)


@given(st.lists(EVENTS, max_size=40))
def test_current_is_always_a_version_that_was_committed(events: list[object]) -> None:
    """Whatever happens, plan.current only ever names a version that passed probation."""
    plan = Plan(current="1.0")
    committed = {"1.0"}
    for event in events:
        if event == "crash":
            plan, _ = resume(plan)
            continue
        if event == "hold":
            plan = replace(plan, waiting="" if plan.waiting else "deferred: outside window")
            continue
        assert not isinstance(event, str)
        try:
            new, action = step(plan, event)  # type: ignore[arg-type]
        except IllegalTransitionError:
            continue
        if isinstance(action, Report) and action.outcome == "installed":
            committed.add(action.version)
        if isinstance(action, SwitchTo) and plan.phase is Phase.STAGING:
            assert not plan.waiting  # a held target is staged, never activated
        plan = new
        assert plan.current in committed
        if plan.phase is Phase.IDLE:
            assert plan.target is None
        else:
            assert plan.target is not None
        assert plan.current not in plan.bad or plan.current == "1.0"


def test_a_network_fault_while_fetching_resumes_in_place_after_the_backoff() -> None:
    plan, _ = step(Plan(current="1.0"), Directed("2.0"))
    plan, action = step(plan, Failed("connection reset", retry_at=100.0))
    assert (plan.phase, plan.tries, plan.retry_at, action) == (
        Phase.FETCHING,
        1,
        100.0,
        Fetch("2.0"),
    )
    assert plan.failure == "connection reset"
    plan, action = step(plan, Fetched())
    assert (plan.phase, plan.tries, plan.retry_at) == (Phase.STAGING, 0, 0.0)


def test_a_fetch_the_directive_moved_away_from_is_abandoned_quietly() -> None:
    plan, _ = step(Plan(current="1.0", bad=("1.5",)), Directed("2.0"))
    assert step(plan, Abandoned()) == (Plan(current="1.0", bad=("1.5",)), None)


def test_resume_forgets_a_probation_deadline_and_a_fetch_backoff() -> None:
    plan = Plan(Phase.PROBATION, current="1.0", target="2.0", attempts=1, deadline=50.0)
    assert resume(plan)[0].deadline == 0.0
    plan = Plan(Phase.FETCHING, current="1.0", target="2.0", attempts=1, retry_at=50.0)
    assert resume(plan)[0].retry_at == 0.0


def test_a_transition_keeps_what_decide_recorded() -> None:
    hold = Hold("2.0", HoldState.FAILED, "x", until=5.0, failures=2)
    pending = (Pending("refused", "1.5", "y", "", 1.0),)
    plan = Plan(current="1.0", hold=hold, pending=pending, said="refused 1.5 y")
    plan, _ = run(plan, Directed("2.0"), Fetched(), Staged(), Switched(), Healthy())
    assert (plan.hold, plan.pending, plan.said) == (hold, pending, "refused 1.5 y")


def test_a_held_target_is_staged_then_waits_ready_until_cleared() -> None:
    plan, _ = run(Plan(current="1.0", waiting="deferred: outside window"), Directed("2.0"))
    plan, action = run(plan, Fetched(), Staged())
    assert (plan.phase, plan.current, plan.target, action) == (Phase.READY, "1.0", "2.0", None)
    assert is_settled(plan)
    assert resume(plan) == (plan, None)  # after a restart it keeps waiting, staged
    plan, action = step(plan, Cleared())
    assert (plan.phase, plan.waiting, action) == (Phase.ACTIVATING, "", SwitchTo("2.0"))
    plan, action = run(plan, Switched(), Healthy())
    assert (plan.current, action) == ("2.0", Report("installed", "2.0"))


def test_a_ready_target_the_directive_moved_away_from_is_dropped() -> None:
    ready = Plan(Phase.READY, current="1.0", target="2.0", attempts=1, waiting="deferred: x")
    assert step(ready, Abandoned()) == (Plan(current="1.0"), None)
