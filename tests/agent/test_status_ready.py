"""What a host says of an app whose new version is staged and held: deferred, with why."""

from uptend.agent.machine import Phase, Plan
from uptend.agent.status import app_status
from uptend.agent.wire import AppState


def test_a_held_staged_target_is_reported_deferred_with_the_directive_s_words() -> None:
    why = "deferred: outside maintenance window (next: 2026-01-05 14:00:00 UTC)"
    ready = Plan(Phase.READY, current="1.0", target="2.0", attempts=1, waiting=why)
    status = app_status("demo", ready, "1.0", True, (None, None, None), "")
    assert (status.state, status.version, status.target, status.reason, status.phase) == (
        AppState.DEFERRED,
        "1.0",
        "2.0",
        why,
        "ready",
    )
    bare = app_status("demo", Plan(Phase.READY, current="1.0", target="2.0"), "1.0", True,
                      (None, None, None), "")  # fmt: skip
    assert bare.reason == "deferred: 2.0 is staged"
