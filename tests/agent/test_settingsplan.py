"""The trial of the agent's own signed settings, as a table: `settingsplan` and the parser.

The version flow is `configplan.decide`'s (tested in test_configplan.py); what is the
agent's own is judged here: a check-in that succeeds with the new settings confirms them; a
deadline passed with at least one failed check-in gives them up.
"""

import pytest

from uptend.agent import configplan as cp
from uptend.agent import settingsplan as sp
from uptend.agent.configplan import ConfigState
from uptend.errors import ConfigError
from uptend.protocol.settings import AgentSettings, parse

TRYING = ConfigState(applied=1, trying=2, deadline=130.0)


def test_the_settings_are_fetched_then_put_on_trial_until_the_bound() -> None:
    facts = cp.Facts(now=100.0, settled=True, probation_s=30.0)
    state, move = cp.decide(2, "uptend-agent/_config/2", ConfigState(applied=1), facts)
    assert move == cp.Fetch(2, "uptend-agent/_config/2")
    fetched = cp.Facts(now=100.0, settled=True, probation_s=30.0, fetched=cp.Fetched(2))
    state, move = cp.decide(2, "uptend-agent/_config/2", state, fetched)
    assert (move, state) == (cp.Apply(2), TRYING)


def test_a_check_in_that_succeeds_with_the_new_settings_confirms_them() -> None:
    trial = sp.checked_in(sp.Trial(), ok=False, error="cannot reach the server")
    assert sp.judge(TRYING, trial, now=110.0, bound_s=30.0) == sp.Wait()
    trial = sp.checked_in(trial, ok=True)
    assert sp.judge(TRYING, trial, now=200.0, bound_s=30.0) == sp.Healthy(2)  # even late
    assert cp.judged(TRYING, healthy=True) == ConfigState(applied=2)


def test_no_successful_check_in_by_the_deadline_gives_them_up() -> None:
    trial = sp.checked_in(sp.Trial(), ok=False, error="cannot reach the server at http://x/")
    assert sp.judge(TRYING, trial, now=129.9, bound_s=30.0) == sp.Wait()
    verdict = sp.judge(TRYING, trial, now=130.0, bound_s=30.0)
    assert isinstance(verdict, sp.Unhealthy)
    assert verdict == sp.Unhealthy(
        2, "no check-in succeeded within 30s with them (cannot reach the server at http://x/)"
    )
    state = cp.judged(TRYING, healthy=False, reason=verdict.reason)
    assert (state.applied, state.trying, state.bad) == (1, None, (2,))  # the old ones in force
    assert cp.shown(state) == (1, 2, f"config 2 rolled back: {verdict.reason}")


def test_a_deadline_passed_while_the_agent_was_down_waits_for_one_try() -> None:
    assert sp.judge(TRYING, sp.Trial(), now=500.0, bound_s=30.0) == sp.Wait()
    assert sp.judge(ConfigState(applied=1), sp.Trial(), now=500.0, bound_s=30.0) == sp.Wait()
    assert isinstance(sp.judge(TRYING, sp.Trial(attempted=True), 500.0, 30.0), sp.Unhealthy)


def test_overrides_name_only_what_the_settings_set() -> None:
    assert sp.overrides(AgentSettings()) == {}
    settings = parse(
        '{"poll_interval_s": 5, "log_level": "DEBUG", "check_reboot": false, "check_disk": true,'
        ' "precondition_commands": [["true"], ["test", "-e", "/ok"]], "server": "http://h:1"}'
    )
    assert sp.overrides(settings) == {
        "poll_interval_s": 5.0,
        "log_level": "debug",
        "precondition_commands": [["true"], ["test", "-e", "/ok"]],
        "check_reboot": False,
        "check_disk": True,
        "server": "http://h:1/",
    }


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"poll": 5}', "unknown agent setting 'poll'"),
        ('{"poll_interval_s": true}', "expected a number"),
        ('{"poll_interval_s": -1}', "is not in (0, 604800]"),
        ('{"poll_interval_s": 1e9}', "is not in (0, 604800]"),
        ('{"log_level": "loud"}', "'loud' is not one of debug, info, warning, error"),
        ('{"check_disk": 1}', "expected true or false"),
        ('{"precondition_commands": "true"}', "a list of at most 16 argv"),
        ('{"precondition_commands": [[]]}', "[] is not a command's argv"),
        ('{"precondition_commands": [["a\\u0000"]]}', "is not a command's argv"),
        ('{"server": 5}', "expected a URL"),
        ('{"server": "file:///etc"}', "is not an http:// or https:// URL"),
        ('{"server": "http://h/?x=1"}', "is not an http:// or https:// URL"),
    ],
)
def test_a_document_the_agent_would_refuse_is_named_wrong(doc: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(doc)
    assert why in e.value.message
    assert "poll_interval_s" in e.value.hint  # the hint lists the settings


def test_an_empty_document_sets_nothing() -> None:
    assert parse(b"{}") == AgentSettings()
