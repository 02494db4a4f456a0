"""Pins and floors, pure: what a pin names, and that no pin ever crosses a floor."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptend.errors import ConfigError
from uptend.policy.desired import AppFacts, desired_version
from uptend.policy.pins import Resolved, below, floor_of, matching, parse_pin, resolve
from uptend.protocol import AppState, ReasonCode
from uptend.protocol.versions import parse_version

RELEASES = ["2.2", "2.3.0", "2.3.1", "2.4rc1", "2.10"]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("2.2", "2.2"), ("2.2.0", "2.2.0"), ("1.1-0", "1.1.post0"), ("2.3.*", "2.3.*"),
     ("2.*", "2.*"), (" n-1 ", "n-1"), ("N-2", "n-2"), ("n-20", "n-20")],
)  # fmt: skip
def test_a_pin_is_stored_in_canonical_form(text: str, canonical: str) -> None:
    assert parse_pin(text) == canonical


@pytest.mark.parametrize("text", ["", "latest", "2.*.*", "*", "2.3*", "n-0", "n-21", "n-x", "v2"])
def test_a_bad_pin_is_refused_with_the_forms_it_may_take(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_pin(text)
    assert "n-1" in e.value.hint


def test_what_each_spec_names() -> None:
    assert matching("2.3.*", RELEASES) == "2.3.1"  # the newest matching
    assert matching("2.*", RELEASES) == "2.10"  # PEP 440 order, not text order
    assert matching("2.4.*", RELEASES) == "2.4rc1"  # pre-releases count, as for the head
    assert matching("2.2.0.*", RELEASES) == "2.2"  # 2.2 is 2.2.0
    assert matching("3.*", RELEASES) is None
    assert matching("n-1", RELEASES) == "2.4rc1"  # the release before the newest
    assert matching("n-4", RELEASES) == "2.2"
    assert matching("n-5", RELEASES) is None
    assert matching("2.3", RELEASES) == "2.3.0"  # an exact pin, however spelled
    assert matching("2.5", RELEASES) is None


def test_the_floor_is_the_highest_release_published_with_floor() -> None:
    assert floor_of([]) is None
    assert floor_of(["2.2", "2.10", "2.3"]) == "2.10"
    assert below("2.2", "2.3")
    assert not below("2.3", "2.3")
    assert not below("1.0", None)


def test_no_pin_no_floor_changes_nothing() -> None:
    assert resolve(None, RELEASES, None) is None
    assert resolve(None, RELEASES, "2.3.1") is None  # the head is above the floor
    assert resolve("n-1", [], None) is None  # nothing published: no_release says it


def test_a_pin_below_the_head_holds_the_group_there_and_says_so() -> None:
    r = resolve("2.2", RELEASES, None)
    assert r == Resolved("2.2", pinned=True, code=ReasonCode.PINNED, message="pinned to 2.2 (2.2)")


def test_a_pin_naming_the_head_is_no_reason_to_be_held() -> None:
    r = resolve("2.*", RELEASES, None)
    assert r is not None
    assert (r.version, r.pinned, r.code) == ("2.10", True, None)


def test_a_pin_matching_nothing_keeps_what_runs() -> None:
    r = resolve("3.*", RELEASES, None)
    assert r is not None
    assert (r.version, r.pinned, r.code) == (None, False, ReasonCode.PINNED)
    assert "matches no release" in r.message


def test_a_later_floor_lifts_a_pin_to_the_lowest_release_it_allows() -> None:
    r = resolve("2.2", RELEASES, "2.3.1")
    assert r is not None
    assert (r.version, r.pinned, r.code) == ("2.3.1", True, ReasonCode.FLOOR)
    assert "below the floor 2.3.1" in r.message
    assert "held at 2.3.1" in r.message
    head = resolve("2.2", RELEASES, "2.10")
    assert head is not None
    assert (head.version, head.code) == ("2.10", None)  # lifted to the head: not held back


def test_a_channel_with_nothing_at_or_above_the_floor_directs_nothing_new() -> None:
    r = resolve(None, ["1.0", "1.1"], "2.0")
    assert r is not None
    assert (r.version, r.pinned, r.code) == (None, False, ReasonCode.FLOOR)
    pinned = resolve("1.0", ["1.0", "1.1"], "2.0")
    assert pinned is not None
    assert (pinned.version, pinned.code) == (None, ReasonCode.FLOOR)
    assert "no release allowed" in pinned.message


versions = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)).map(
        lambda t: ".".join(map(str, t))
    ),
    min_size=1,
    max_size=8,
    unique=True,
)
specs = st.one_of(
    st.none(),
    st.integers(0, 3).map(lambda m: f"{m}.*"),
    st.tuples(st.integers(0, 3), st.integers(0, 3)).map(lambda t: f"{t[0]}.{t[1]}.*"),
    st.integers(1, 9).map(lambda k: f"n-{k}"),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)).map(
        lambda t: ".".join(map(str, t))
    ),
)


@given(releases=versions, spec=specs, data=st.data())
def test_a_floor_is_never_crossed_whatever_the_pin(
    releases: list[str], spec: str | None, data: st.DataObject
) -> None:
    floor = data.draw(st.one_of(st.none(), st.sampled_from(releases)))
    installed = data.draw(st.one_of(st.none(), st.sampled_from(releases)))
    r = resolve(spec, releases, floor)
    decision = desired_version(
        app="demo",
        channel="stable",
        group="web",
        releases=releases,
        installed=installed,
        auto_update=data.draw(st.booleans()),
        resolved=r,
    )
    directed = decision.version
    if directed is not None and directed != installed:  # what the server sends a host to
        assert not below(directed, floor)
        assert directed in releases
    if decision.pinned:  # only a pin lets the agent go down
        assert spec is not None
    if r is not None and r.code is None:  # not held: on the head
        assert r.version == max(releases, key=parse_version)


@given(releases=versions, spec=specs)
def test_without_a_floor_the_pin_names_what_runs(releases: list[str], spec: str | None) -> None:
    r = resolve(spec, releases, None)
    if spec is None:
        assert r is None
    else:
        assert r is not None
        assert r.version == matching(spec, releases)


def test_the_pin_decides_whatever_auto_update_says() -> None:
    pin = Resolved("1.0", pinned=True, code=ReasonCode.PINNED, message="pinned to 1.0 (1.0)")
    kept = Resolved(None, pinned=False, code=ReasonCode.FLOOR, message="below the floor")
    base = {"app": "demo", "channel": "stable", "group": "web", "releases": ["1.0", "2.0"]}
    down = desired_version(**base, installed="2.0", auto_update=False, resolved=pin)  # type: ignore[arg-type]
    assert (down.version, down.pinned, down.reason) == ("1.0", True, "pinned to 1.0 (1.0)")
    stay = desired_version(**base, installed="2.0", auto_update=True, resolved=kept)  # type: ignore[arg-type]
    assert (stay.version, stay.pinned) == ("2.0", False)


def test_the_fleet_view_desires_what_the_pin_says() -> None:
    pin = Resolved("1.0", pinned=True, code=ReasonCode.PINNED, message="pinned to 1.0 (1.0)")
    f = AppFacts(
        app="demo", group="web", auto_update=True, assigned=True, channel="stable", head="2.0",
        installed="2.0", state=AppState.RUNNING, target=None, said="", log_tail="",
        last_seen=None, enrolled_at=None, offline_after_s=1.0, resolved=pin, pin="1.0",  # type: ignore[arg-type]
    )  # fmt: skip
    assert f.desired() == "1.0"
