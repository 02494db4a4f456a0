"""The config decision point, as a table: each rule of `configplan.decide` and `judged`."""

from uptend.agent import configplan as cp
from uptend.agent.configplan import ConfigState

T = "demo/_config/"


def facts(**kw: object) -> cp.Facts:
    base: dict[str, object] = {"now": 100.0, "settled": True, "probation_s": 2.0}
    return cp.Facts(**{**base, **kw})  # type: ignore[arg-type]


def test_a_new_version_is_fetched_then_applied_with_a_trial_deadline() -> None:
    state, move = cp.decide(3, T + "3", ConfigState(applied=2), facts())
    assert move == cp.Fetch(3, T + "3")
    assert state == ConfigState(applied=2)
    state, move = cp.decide(3, T + "3", state, facts(fetched=cp.Fetched(3)))
    assert move == cp.Apply(3)
    assert (state.trying, state.deadline, state.applied) == (3, 102.0, 2)


def test_a_trial_is_judged_before_anything_else() -> None:
    trying = ConfigState(applied=2, trying=3, deadline=102.0)
    assert cp.decide(4, T + "4", trying, facts()) == (trying, cp.Judge(3))


def test_nothing_to_do_without_a_config_or_for_the_applied_one() -> None:
    for version in (None, 2):
        _state, move = cp.decide(version, T, ConfigState(applied=2), facts())
        assert isinstance(move, cp.Nothing)


def test_a_version_that_failed_here_is_skipped_whatever_the_server_says() -> None:
    bad = ConfigState(applied=2, bad=(3,), failure="config 3 rolled back: x")
    state, move = cp.decide(3, T + "3", bad, facts())
    assert state == bad
    assert isinstance(move, cp.Nothing)
    assert "failed here" in move.why


def test_an_older_version_is_refused_as_a_replay() -> None:
    state, move = cp.decide(1, T + "1", ConfigState(applied=2), facts())
    assert isinstance(move, cp.Refused)
    assert "replay" in move.reason
    assert state.bad == (1,)


def test_nothing_starts_while_an_update_of_the_app_is_in_flight() -> None:
    state, move = cp.decide(3, T + "3", ConfigState(applied=2), facts(settled=False))
    assert isinstance(move, cp.Nothing)
    assert state == ConfigState(applied=2)


def test_a_document_that_does_not_verify_is_refused_and_never_fetched_again() -> None:
    failed = cp.FetchFailed("hash mismatch for demo/_config/3", transient=False)
    state, move = cp.decide(3, T + "3", ConfigState(applied=2), facts(fetched=failed))
    assert isinstance(move, cp.Refused)
    assert state.bad == (3,)
    assert "config 3 refused: hash mismatch" in state.failure
    assert isinstance(cp.decide(3, T + "3", state, facts())[1], cp.Nothing)


def test_an_unreachable_repository_is_tried_again_later() -> None:
    failed = cp.FetchFailed("connection refused", transient=True)
    state, move = cp.decide(3, T + "3", ConfigState(applied=2), facts(fetched=failed))
    assert isinstance(move, cp.Nothing)
    assert state.bad == ()
    assert cp.decide(3, T + "3", state, facts())[1] == cp.Fetch(3, T + "3")


def test_the_verdict_makes_the_trial_applied_or_bad() -> None:
    trying = ConfigState(applied=2, trying=3, deadline=102.0)
    assert cp.judged(trying, healthy=True) == ConfigState(applied=3)
    failed = cp.judged(trying, healthy=False, reason="demo exited with code 5")
    assert (failed.applied, failed.trying, failed.bad) == (2, None, (3,))
    assert failed.failure == "config 3 rolled back: demo exited with code 5"


def test_the_check_in_shows_a_failure_until_a_newer_version_is_applied() -> None:
    failed = ConfigState(applied=2, bad=(3,), failure="config 3 rolled back: x")
    assert cp.shown(failed) == (2, 3, "config 3 rolled back: x")
    later = ConfigState(applied=4, bad=(3,), failure="config 3 rolled back: x")
    assert cp.shown(later) == (4, 3, "")


def test_bad_versions_are_bounded() -> None:
    state = ConfigState()
    for v in range(1, 50):
        state = cp.judged(ConfigState(trying=v, bad=state.bad), healthy=False, reason="x")
    assert len(state.bad) == cp.MAX_BAD
    assert state.bad[-1] == 49
