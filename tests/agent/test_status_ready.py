"""What a host says of an app whose new version is staged and held (deferred, with why), or
failed (with the version that failed)."""

from uptend.agent.installers.base import PackageState
from uptend.agent.machine import Hold, HoldState, Phase, Plan
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


def test_a_failed_update_is_reported_failed_with_the_version_that_failed() -> None:
    """A staged rollout counts a host failed on its release by (state failed, target it)."""
    held = Hold("2.0", HoldState.FAILED, "2.0 failed here: exit 3")
    plan = Plan(Phase.IDLE, current="1.0", bad=("2.0",), hold=held)
    status = app_status("demo", plan, "1.0", True, (None, None, None), "")
    assert (status.state, status.version, status.target, status.reason) == (
        AppState.FAILED,
        "1.0",
        "2.0",
        "2.0 failed here: exit 3",
    )
    deferred = Hold("2.0", HoldState.DEFERRED, "deferred: a reboot is pending")
    status = app_status("demo", Plan(current="1.0", hold=deferred), "1.0", True, (None,) * 3, "")
    assert (status.state, status.target) == (AppState.DEFERRED, "2.0")
    running = app_status("demo", Plan(current="1.0"), "1.0", True, (None, None, None), "")
    assert (running.state, running.target) == (AppState.RUNNING, None)


def test_a_package_is_reported_with_its_kind_as_its_manager_said_it_inside_the_bounds() -> None:
    said = PackageState("uptend-demo", "2.0-1", "2.1-3\x1b[2J")  # dpkg's words: hostile too
    status = app_status(
        "demo", Plan(current="2.0"), "2.0", True, (None,) * 3, "", kind="deb", package=said
    )
    assert (status.state, status.reason) == (AppState.RUNNING, "")  # not in the reason any more
    assert (status.kind, status.package, status.package_expected) == ("deb", "uptend-demo", "2.0-1")
    assert status.package_version == "2.1-3??2J"
    gone = app_status(
        "demo",
        Plan(current="2.0"),
        "2.0",
        True,
        (None,) * 3,
        "",
        kind="deb",
        package=PackageState("uptend-demo", "2.0-1", None),
    )
    assert (gone.package, gone.package_version) == ("uptend-demo", None)
    bundle = app_status("demo", Plan(current="2.0"), "2.0", True, (None,) * 3, "", kind="bundle")
    assert (bundle.kind, bundle.package) == ("bundle", None)
