"""Staged rollouts, pure: plans, wave membership, the state machine, the evaluator, the gate."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptend.errors import ConfigError
from uptend.policy.rollout import (
    FINAL,
    Event,
    Hold,
    HostFacts,
    Installing,
    OnHalt,
    Phase,
    Plan,
    Revert,
    Rollout,
    State,
    Take,
    cutoffs,
    evaluate,
    gate,
    installing,
    label_slots,
    membership,
    parse_label_cap,
    parse_waves,
    phase,
    ranked,
    splay_offset,
    transition,
    wave_of,
    wave_sizes,
)
from uptend.protocol import ReasonCode

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rollout(state: State = State.RUNNING, wave: int = 0, waves: int = 3) -> Rollout:
    return Rollout(id="r1", state=state, wave=wave, wave_opened_at=T0, waves=waves)


# -- plans ---------------------------------------------------------------------------------------


def test_the_default_plan_is_one_wave_of_everyone_with_no_soak_and_no_halt() -> None:
    plan = Plan()
    assert plan.waves == (100.0,)
    assert plan.soak_s == 0
    assert plan.max_concurrent is None
    hosts = {f"a{i}": HostFacts(wave=0, told_at=T0, failed=True) for i in range(10)}
    step = evaluate(rollout(waves=1), plan, hosts, at(1))
    assert step.state is State.COMPLETED  # even all failed: the default plan never halts


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"waves": (5.0, 25.0)}, "ending at 100"),
        ({"waves": ()}, "ending at 100"),
        ({"waves": (0.0, 100.0)}, "ending at 100"),
        ({"waves": (25.0, 5.0, 100.0)}, "does not grow"),
        ({"waves": (25.0, 25.0, 100.0)}, "does not grow"),
        ({"soak_s": -1.0}, "--soak"),
        ({"splay_s": 1e9}, "--splay"),
        ({"report_deadline_s": 0.0}, "--report-deadline"),
        ({"max_failure_rate": 1.5}, "--max-failure-rate"),
        ({"min_sample": 0}, "--min-sample"),
        ({"max_concurrent": 0}, "at least 1"),
        ({"max_concurrent_per_label": (("zone", 0),)}, "at least 1"),
        ({"max_concurrent_per_label": (("zone", 1), ("zone", 2))}, "repeats a key"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_by_name(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Plan(**kwargs)  # type: ignore[arg-type]


def test_waves_and_label_caps_parse_or_are_refused() -> None:
    assert parse_waves("5,25,100") == (5.0, 25.0, 100.0)
    assert parse_label_cap("zone=2") == ("zone", 2)
    with pytest.raises(ConfigError, match="not a list of numbers"):
        parse_waves("5,x")
    for bad in ("zone", "=1", "zone=x"):
        with pytest.raises(ConfigError, match="KEY=N"):
            parse_label_cap(bad)


# -- waves ---------------------------------------------------------------------------------------


def test_a_three_host_fleet_gets_a_one_host_first_wave() -> None:
    assert wave_sizes((5, 25, 100), 3) == [1, 1, 3]
    waves = membership("r1", ["a", "b", "c"], (5, 25, 100))
    assert Counter(waves.values()) == {0: 1, 2: 2}


def test_percentages_are_exact_not_float_rounded() -> None:
    assert wave_sizes((0.1, 7.0, 100.0), 1000) == [1, 70, 1000]  # 0.07*1000 is 70.00000000000001


def test_membership_depends_on_the_rollout_id_and_not_on_the_order_given() -> None:
    hosts = [f"agent-{i}" for i in range(50)]
    assert membership("r1", hosts, (10, 100)) == membership("r1", reversed(hosts), (10, 100))
    assert ranked("r1", hosts) != ranked("r2", hosts)


@given(
    hosts=st.sets(st.text(min_size=1, max_size=8), max_size=60),
    waves=st.lists(st.integers(1, 100), min_size=1, max_size=6, unique=True).map(
        lambda ps: tuple(float(p) for p in sorted({*ps, 100}))
    ),
    rollout_id=st.text(max_size=8),
)
@settings(max_examples=200)
def test_waves_only_grow_and_their_union_is_the_target_set(
    hosts: set[str], waves: tuple[float, ...], rollout_id: str
) -> None:
    of = membership(rollout_id, hosts, waves)
    assert set(of) == hosts
    sizes = wave_sizes(waves, len(hosts))
    assert sizes == sorted(sizes)
    assert sizes[-1] == len(hosts)
    for k, size in enumerate(sizes):
        assert sum(1 for w in of.values() if w <= k) == size
    if hosts:
        assert sizes[0] >= 1  # the first wave is never empty


def test_splay_spreads_starts_within_the_splay() -> None:
    offsets = [splay_offset("r1", f"a{i}", 60) for i in range(200)]
    assert all(timedelta(0) <= o < timedelta(seconds=60) for o in offsets)
    assert max(offsets) - min(offsets) > timedelta(seconds=45)
    assert splay_offset("r1", "a1", 0) == timedelta(0)


# -- states --------------------------------------------------------------------------------------


def test_the_state_machine() -> None:
    assert transition(State.RUNNING, Event.PAUSE) is State.PAUSED
    assert transition(State.PAUSED, Event.RESUME) is State.RUNNING
    assert transition(State.RUNNING, Event.HALT) is State.HALTED
    assert transition(State.HALTED, Event.ABORT) is State.ABORTED
    assert transition(State.PAUSED, Event.SUPERSEDE) is State.SUPERSEDED
    assert transition(State.RUNNING, Event.COMPLETE) is State.COMPLETED


@pytest.mark.parametrize(
    ("state", "event", "hint"),
    [
        (State.COMPLETED, Event.ABORT, "it is over"),
        (State.HALTED, Event.RESUME, "publish a fixed release"),
        (State.PAUSED, Event.PAUSE, "a paused rollout can: resume, abort, supersede"),
    ],
)
def test_an_event_that_does_not_apply_is_refused(state: State, event: Event, hint: str) -> None:
    with pytest.raises(ConfigError, match=f"cannot {event} a {state} rollout") as e:
        transition(state, event)
    assert hint in (e.value.hint or "")


@given(events=st.lists(st.sampled_from(Event), max_size=12))
def test_a_final_state_is_never_left(events: list[Event]) -> None:
    state = State.RUNNING
    for event in events:
        try:
            after = transition(state, event)
        except ConfigError:
            continue
        assert state not in FINAL
        state = after


# -- hosts ---------------------------------------------------------------------------------------

SOAK = Plan(waves=(10.0, 100.0), soak_s=60, report_deadline_s=300)


@pytest.mark.parametrize(
    ("facts", "opened", "now", "expected"),
    [
        (HostFacts(wave=0, told_at=T0, failed=True), T0, 1, Phase.FAILED),
        (HostFacts(wave=0, told_at=T0, healthy_at=at(10), restarts=1), T0, 20, Phase.FAILED),
        (HostFacts(wave=0, told_at=T0, healthy_at=at(10)), T0, 20, Phase.SOAKING),
        (HostFacts(wave=0, told_at=T0, healthy_at=at(10)), T0, 70, Phase.SUCCEEDED),
        (HostFacts(wave=0, told_at=T0, deferred=True), T0, 900, Phase.DEFERRED),
        (HostFacts(wave=0, told_at=T0), T0, 10, Phase.INSTALLING),
        (HostFacts(wave=0, told_at=T0), T0, 300, Phase.FAILED),
        (HostFacts(wave=0), T0, 10, Phase.WAITING),
        (HostFacts(wave=0), T0, 301, Phase.FAILED),  # never seen, past the deadline
        (HostFacts(wave=0, seen_at=at(200)), T0, 301, Phase.WAITING),  # seen: it is capped
        (HostFacts(wave=1), None, 10_000, Phase.WAITING),  # its wave is not open
    ],
)
def test_a_hosts_phase(
    facts: HostFacts, opened: datetime | None, now: float, expected: Phase
) -> None:
    assert phase(facts, wave_opened_at=opened, plan=SOAK, now=at(now)) is expected


# -- the evaluator -------------------------------------------------------------------------------


def fleet(n_first: int, n_rest: int, **first: object) -> dict[str, HostFacts]:
    hosts = {f"f{i}": HostFacts(wave=0, **first) for i in range(n_first)}  # type: ignore[arg-type]
    hosts.update({f"r{i}": HostFacts(wave=1) for i in range(n_rest)})
    return hosts


def test_a_soaked_wave_opens_the_next_and_the_last_one_completes() -> None:
    plan = Plan(waves=(10.0, 100.0), soak_s=60, max_failure_rate=0.05, min_sample=1)
    hosts = fleet(2, 18, told_at=T0, healthy_at=at(5))
    step = evaluate(rollout(waves=2), plan, hosts, at(30))
    assert (step.state, step.wave, step.changed) == (State.RUNNING, 0, False)
    assert step.counts[Phase.SOAKING] == 2
    assert "2 hosts not done soaking" in step.reason
    step = evaluate(rollout(waves=2), plan, hosts, at(65))
    assert (step.state, step.wave, step.changed) == (State.RUNNING, 1, True)
    done = {a: HostFacts(wave=f.wave, told_at=T0, healthy_at=at(5)) for a, f in hosts.items()}
    step = evaluate(rollout(wave=1, waves=2), plan, done, at(65))
    assert (step.state, step.changed) == (State.COMPLETED, True)


def test_a_crash_during_soak_halts_the_first_wave() -> None:
    plan = Plan(waves=(10.0, 100.0), soak_s=60, max_failure_rate=0.05, min_sample=1)
    hosts = fleet(2, 18, told_at=T0, healthy_at=at(5), restarts=1)
    step = evaluate(rollout(waves=2), plan, hosts, at(30))
    assert (step.state, step.wave, step.changed) == (State.HALTED, 0, True)
    assert "2 of 2 reported hosts failed" in step.reason


def test_the_rate_is_judged_only_once_min_sample_hosts_reported() -> None:
    plan = Plan(waves=(50.0, 100.0), max_failure_rate=0.05, min_sample=3)
    hosts = fleet(1, 0, told_at=T0, failed=True) | {"g": HostFacts(wave=0, told_at=T0)}
    assert evaluate(rollout(waves=2), plan, hosts, at(1)).state is State.RUNNING
    hosts["g"] = HostFacts(wave=0, told_at=T0, failed=True)
    hosts["h"] = HostFacts(wave=0, told_at=T0, failed=True)
    assert evaluate(rollout(waves=2), plan, hosts, at(1)).state is State.HALTED


def test_a_rollout_that_is_not_running_is_left_as_it_is() -> None:
    step = evaluate(rollout(State.PAUSED), Plan(), fleet(1, 0, failed=True), at(1))
    assert (step.state, step.changed) == (State.PAUSED, False)


# -- the gate ------------------------------------------------------------------------------------


def ask(
    r: Rollout,
    plan: Plan = SOAK,
    *,
    wave: int = 0,
    told: bool = False,
    took: bool = False,
    previous: str | None = "1.0",
    labels: dict[str, str] | None = None,
    busy: Installing = Installing(),
    now: float = 1,
) -> object:
    return gate(
        r,
        plan,
        agent="a1",
        wave=wave,
        told=told,
        took=took,
        previous=previous,
        labels=labels or {},
        busy=busy,
        now=at(now),
    )


def test_the_gate_for_each_state() -> None:
    assert isinstance(ask(rollout(State.HALTED), took=True), Revert)
    assert isinstance(ask(rollout(State.ABORTED), told=True), Revert)
    hold = ask(rollout(State.HALTED), took=False)
    assert isinstance(hold, Hold)
    assert hold.code is ReasonCode.HALTED
    held = ask(rollout(State.HALTED), Plan(on_halt=OnHalt.HOLD), took=True)
    assert isinstance(held, Hold)
    assert held.code is ReasonCode.HALTED
    assert isinstance(ask(rollout(State.ABORTED), took=True, previous=None), Hold)
    assert isinstance(ask(rollout(State.COMPLETED), wave=2), Take)
    assert isinstance(ask(rollout(State.SUPERSEDED)), Take)
    assert isinstance(ask(rollout(State.PAUSED), told=True), Take)
    paused = ask(rollout(State.PAUSED))
    assert isinstance(paused, Hold)
    assert paused.code is ReasonCode.WAITING_WAVE


def test_a_host_outside_the_open_wave_waits_for_it() -> None:
    hold = ask(rollout(wave=0), wave=1)
    assert isinstance(hold, Hold)
    assert hold.code is ReasonCode.WAITING_WAVE
    assert "waiting for wave 2: opens after wave 1 soaks" in hold.message
    assert isinstance(ask(rollout(wave=1), wave=1), Take)


def test_splay_holds_a_host_until_its_start() -> None:
    plan = Plan(splay_s=600)
    starts = T0 + splay_offset("r1", "a1", 600)
    hold = ask(rollout(), plan, now=0)
    assert isinstance(hold, Hold)
    assert hold.until == starts
    assert isinstance(ask(rollout(), plan, now=600), Take)


def test_caps_hold_a_host_overall_and_per_label_value() -> None:
    plan = Plan(max_concurrent=2, max_concurrent_per_label=(("zone", 1),))
    full = ask(rollout(), plan, busy=Installing(2, {}))
    assert isinstance(full, Hold)
    assert full.code is ReasonCode.CONCURRENCY_CAP
    zone = installing([{"zone": "eu"}])
    held = ask(rollout(), plan, labels={"zone": "eu"}, busy=zone)
    assert isinstance(held, Hold)
    assert "zone=eu" in held.message
    assert isinstance(ask(rollout(), plan, labels={"zone": "us"}, busy=zone), Take)
    assert isinstance(ask(rollout(), plan, busy=zone), Take)  # no zone label: only the total


@given(
    zones=st.lists(st.sampled_from(["eu", "us", "ap", None]), min_size=1, max_size=40),
    cap=st.one_of(st.none(), st.integers(1, 6)),
    per_zone=st.integers(1, 3),
    finishes=st.lists(st.integers(0, 39), max_size=40),
)
@settings(max_examples=150)
def test_at_no_instant_do_more_hosts_install_than_the_caps_allow(
    zones: list[str | None], cap: int | None, per_zone: int, finishes: list[int]
) -> None:
    """Hosts ask in turn, some finish in between: the installing set never breaks a cap."""
    plan = Plan(max_concurrent=cap, max_concurrent_per_label=(("zone", per_zone),))
    labels = [{"zone": z} if z is not None else {} for z in zones]
    busy: set[int] = set()
    done: set[int] = set()
    steps = [*range(len(zones)), *(-1 - f for f in finishes)]
    for step in steps * 2:
        if step < 0:
            busy.discard(-1 - step)
            done.add(-1 - step)
            continue
        if step in busy or step in done:
            continue
        verdict = ask(
            rollout(), plan, labels=labels[step], busy=installing(labels[i] for i in busy)
        )
        if isinstance(verdict, Take):
            busy.add(step)
        else:
            assert isinstance(verdict, Hold)
            assert verdict.code is ReasonCode.CONCURRENCY_CAP
            # the reason is the one that holds it back: freeing the slot it names lets it pass
        assert cap is None or len(busy) <= cap
        by_zone = Counter(labels[i].get("zone") for i in busy)
        assert all(n <= per_zone for z, n in by_zone.items() if z is not None)


@given(
    state=st.sampled_from(State),
    wave=st.integers(0, 2),
    host_wave=st.integers(0, 2),
    told=st.booleans(),
    took=st.booleans(),
    full=st.booleans(),
)
def test_the_reason_given_is_the_one_that_holds_the_host_back(
    state: State, wave: int, host_wave: int, told: bool, took: bool, full: bool
) -> None:
    """Remove the obstacle a Hold names and the host is no longer held for that reason."""
    plan = Plan(waves=(10.0, 50.0, 100.0), max_concurrent=1)
    busy = Installing(1 if full else 0)
    r = rollout(state, wave)
    verdict = ask(r, plan, wave=host_wave, told=told, took=took, busy=busy)
    if not isinstance(verdict, Hold):
        return
    if verdict.code is ReasonCode.HALTED:
        assert state in (State.HALTED, State.ABORTED)
        return
    if verdict.code is ReasonCode.CONCURRENCY_CAP:
        assert isinstance(ask(r, plan, wave=host_wave, told=told, took=took), Take)
        return
    assert verdict.code is ReasonCode.WAITING_WAVE
    opened = rollout(State.RUNNING, max(wave, host_wave))
    again = ask(opened, plan, wave=host_wave, told=told, took=took, busy=busy)
    assert not (isinstance(again, Hold) and again.code is ReasonCode.WAITING_WAVE)


@given(
    hosts=st.sets(st.text("abcdef0123456789", min_size=1, max_size=8), max_size=60),
    late=st.sets(st.text("ghijkl", min_size=1, max_size=6), max_size=20),
    waves=st.sampled_from([(100.0,), (5.0, 25.0, 100.0), (10.0, 100.0), (1.0, 2.0, 50.0, 100.0)]),
)
def test_the_rank_cutoffs_give_every_host_its_wave_and_a_late_host_the_one_its_rank_says(
    hosts: set[str], late: set[str], waves: tuple[float, ...]
) -> None:
    cuts = cutoffs("r1", hosts, waves)
    assert len(cuts) == len(waves)
    start = membership("r1", hosts, waves)
    assert {a: wave_of("r1", a, cuts) for a in hosts} == start  # the same waves as at the start
    everyone = ranked("r1", hosts | late)
    for a in late:
        w = wave_of("r1", a, cuts)
        # its successor among the start hosts in rank order decides (none after it: the last)
        after = [h for h in everyone[everyone.index(a) + 1 :] if h in hosts]
        assert w == (start[after[0]] if after else len(waves) - 1)


def test_a_host_without_the_capped_label_takes_no_label_slot() -> None:
    plan = Plan(max_concurrent_per_label=(("rack", 1), ("zone", 2)))
    assert label_slots(plan, {"zone": "eu", "os": "x"}) == (("zone", "eu", 2),)
    assert label_slots(plan, {}) == ()
