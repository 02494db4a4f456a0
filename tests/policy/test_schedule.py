"""Maintenance windows, the freeze and critical releases: pure, with DST nights spelled out."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from uptend.errors import ConfigError
from uptend.policy.schedule import (
    MAX_SPEC,
    MAX_WINDOWS,
    Freeze,
    Go,
    Schedule,
    Wait,
    Window,
    closes_at,
    is_open,
    may_install,
    next_open,
    parse_window,
    parse_windows,
)
from uptend.protocol import ReasonCode

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
SPRING = date(2025, 3, 30)  # Berlin: 02:00 CET -> 03:00 CEST (01:00 UTC)
AUTUMN = date(2025, 10, 26)  # Berlin: 03:00 CEST -> 02:00 CET (01:00 UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("Sat,Sun 02:00-05:00 Europe/Berlin", "Sat,Sun 02:00-05:00 Europe/Berlin"),
        ("mon-fri 22:00-02:00", "Mon-Fri 22:00-02:00 UTC"),
        ("Fri-Mon 00:00-24:00 America/New_York", "Mon,Fri-Sun 00:00-24:00 America/New_York"),
        ("daily 01:00-02:00 UTC", "daily 01:00-02:00 UTC"),
        ("Mon,Wed,Thu,Fri,Sun 01:00-02:00", "Mon,Wed-Fri,Sun 01:00-02:00 UTC"),
        ("Tue,Tue 23:30-00:00", "Tue 23:30-00:00 UTC"),
    ],
)
def test_a_spec_reads_back_canonical(spec: str, canonical: str) -> None:
    window = parse_window(spec)
    assert str(window) == canonical
    assert parse_window(str(window)) == window


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("Sa 02:00-05:00", "unknown day 'Sa'"),
        ("Mon-Fr 02:00-05:00", "unknown day 'Fr'"),
        ("Sat 2:00-05:00", "bad time '2:00'"),
        ("Sat 02:00-25:00", "bad time '25:00'"),
        ("Sat 24:00-02:00", "bad time '24:00'"),
        ("Sat 02:60-03:00", "bad time '02:60'"),
        ("Sat 02:00", "'02:00' is not a time range"),
        ("Sat 02:00-02:00", "starts and ends at 02:00"),
        ("Sat 02:00-05:00 Europe/Berln", "unknown time zone 'Europe/Berln'"),
        ("Sat 02:00-05:00 ../etc/passwd", "unknown time zone '../etc/passwd'"),
        ("Sat 02:00-05:00 Europe", "unknown time zone 'Europe'"),
        ("Sat 02:00-05:00 " + "A" * 70, "unknown time zone"),
        ("Sat", "expected days, a time range and a zone"),
        ("Sat 02:00-05:00 UTC extra", "expected days, a time range and a zone"),
        ("Sat " + "x" * MAX_SPEC, f"over {MAX_SPEC} characters"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_bad_part(spec: str, names: str) -> None:
    with pytest.raises(ConfigError, match="window") as e:
        parse_window(spec)
    assert names in e.value.message
    assert e.value.hint


def test_too_many_windows_are_refused() -> None:
    assert len(parse_windows(["daily 01:00-02:00"] * MAX_WINDOWS)) == MAX_WINDOWS
    with pytest.raises(ConfigError, match="over the limit"):
        parse_windows(["daily 01:00-02:00"] * (MAX_WINDOWS + 1))


# -- windows ---------------------------------------------------------------------------------------


def test_no_windows_means_any_time() -> None:
    at = utc(2025, 1, 1, 12)
    assert is_open([], at)
    assert next_open([], at) == at
    assert closes_at([], at) is None


def test_a_window_crossing_midnight_belongs_to_its_start_day() -> None:
    w = [parse_window("Sat 23:00-01:00 Europe/Berlin")]  # 2025-01-04 is a Saturday
    assert not is_open(w, utc(2025, 1, 4, 21, 59))  # 22:59 local
    assert is_open(w, utc(2025, 1, 4, 22, 0))
    assert is_open(w, utc(2025, 1, 4, 23, 30))  # Sunday 00:30 local
    assert not is_open(w, utc(2025, 1, 5, 0, 0))  # Sunday 01:00 local
    assert not is_open(w, utc(2025, 1, 5, 22, 30))  # Sunday 23:30: not a window day
    assert next_open(w, utc(2025, 1, 5, 0, 0)) == utc(2025, 1, 11, 22, 0)
    assert closes_at(w, utc(2025, 1, 4, 23, 0)) == utc(2025, 1, 5, 0, 0)


def test_windows_that_touch_close_together() -> None:
    w = list(parse_windows(["Mon 01:00-03:00", "Mon 02:30-05:00", "Mon 05:00-06:00"]))
    assert closes_at(w, utc(2025, 1, 6, 1, 0)) == utc(2025, 1, 6, 6, 0)


def test_a_window_open_all_the_time_is_followed_a_bounded_way() -> None:
    w = [parse_window("daily 00:00-24:00")]
    at = utc(2025, 1, 6, 1, 0)
    end = closes_at(w, at)
    assert end is not None
    assert end > at + timedelta(days=10)


def test_spring_forward_a_window_in_the_skipped_hour_opens_at_the_jump() -> None:
    w = [parse_window("Sun 02:00-03:00 Europe/Berlin")]
    assert not is_open(w, utc(2025, 3, 30, 0, 59))  # 01:59 CET
    assert is_open(w, utc(2025, 3, 30, 1, 0))  # 03:00 CEST: the jump
    assert is_open(w, utc(2025, 3, 30, 1, 59))  # 03:59 CEST: one nominal hour
    assert not is_open(w, utc(2025, 3, 30, 2, 0))
    assert next_open(w, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 1, 0)
    # the week after, an ordinary Sunday: 02:00-03:00 CEST
    assert w[0].occurrence(SPRING + timedelta(days=7)) == (utc(2025, 4, 6, 0), utc(2025, 4, 6, 1))


def test_spring_forward_a_window_around_the_jump_keeps_its_wall_clock_ends() -> None:
    w = parse_window("Sun 01:00-04:00 Europe/Berlin")
    assert w.occurrence(SPRING) == (utc(2025, 3, 30, 0), utc(2025, 3, 30, 2))  # 2 real hours
    half = parse_window("Sun 02:30-03:30 Europe/Berlin")  # starts in the skipped hour
    assert half.occurrence(SPRING) == (utc(2025, 3, 30, 1), utc(2025, 3, 30, 1, 30))


def test_fall_back_a_window_across_it_holds_both_readings_of_the_hour() -> None:
    w = [parse_window("Sun 01:00-04:00 Europe/Berlin")]
    opens, closes = w[0].occurrence(AUTUMN)
    assert (opens, closes) == (utc(2025, 10, 25, 23), utc(2025, 10, 26, 3))  # 4 real hours
    first = datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=0)
    second = datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=1)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    assert is_open(w, first)
    assert is_open(w, second)
    assert not is_open(w, utc(2025, 10, 26, 3))


def test_fall_back_a_start_read_twice_is_its_first_reading_an_end_its_last() -> None:
    w = parse_window("Sun 02:15-02:45 Europe/Berlin")
    assert w.occurrence(AUTUMN) == (utc(2025, 10, 26, 0, 15), utc(2025, 10, 26, 1, 45))


# -- properties ------------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
    max_value=datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def windows(draw: st.DrawFn) -> Window:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440).filter(lambda e: e != start))
    return Window(days, start, end, ZoneInfo(draw(st.sampled_from(ZONES))))


def _offset_changes_near(zone: ZoneInfo, at: datetime) -> bool:
    return (at - timedelta(days=1)).astimezone(zone).utcoffset() != (
        at + timedelta(days=1)
    ).astimezone(zone).utcoffset()


def _wall_inside(w: Window, wall: datetime) -> bool:
    minute = wall.hour * 60 + wall.minute
    if w.start < w.end:
        return wall.weekday() in w.days and w.start <= minute < w.end
    today = wall.weekday() in w.days and minute >= w.start
    return today or ((wall.weekday() - 1) % 7 in w.days and minute < w.end)


@settings(max_examples=400)
@given(w=windows(), day=instants, offset=st.integers(0, 1439), seconds=st.integers(0, 59))
def test_a_wall_clock_time_inside_a_window_is_inside_across_dst(
    w: Window, day: datetime, offset: int, seconds: int
) -> None:
    start_day = day.date() + timedelta(days=(min(w.days) - day.weekday()) % 7)
    minutes = w.start + offset % int(w.length.total_seconds() // 60)
    wall = datetime(start_day.year, start_day.month, start_day.day) + timedelta(  # noqa: DTZ001
        minutes=minutes, seconds=seconds
    )
    assert _wall_inside(w, wall)
    for fold in (0, 1):
        instant = wall.replace(tzinfo=w.zone, fold=fold)
        if instant.astimezone(UTC).astimezone(w.zone).replace(tzinfo=None) == wall:  # not skipped
            assert is_open([w], instant.astimezone(UTC))


@settings(max_examples=400)
@given(w=windows(), at=instants)
def test_open_means_the_wall_clock_is_inside_unless_the_offset_changes(
    w: Window, at: datetime
) -> None:
    if is_open([w], at) and not _offset_changes_near(w.zone, at):
        assert _wall_inside(w, at.astimezone(w.zone).replace(tzinfo=None))


@settings(max_examples=300)
@given(ws=st.lists(windows(), min_size=1, max_size=3), at=instants, f=st.floats(0, 1))
def test_next_open_is_open_and_nothing_before_it_is(
    ws: list[Window], at: datetime, f: float
) -> None:
    t = next_open(ws, at)
    assert t >= at
    assert is_open(ws, t)
    assert t - at <= timedelta(days=8)
    if t > at:
        between = at + (t - at) * f
        if between < t:
            assert not is_open(ws, between)
        assert not is_open(ws, t - timedelta(seconds=1)) or t - timedelta(seconds=1) < at


@settings(max_examples=300)
@given(ws=st.lists(windows(), min_size=1, max_size=3), at=instants, f=st.floats(0, 1))
def test_an_open_span_stays_open_until_it_closes(ws: list[Window], at: datetime, f: float) -> None:
    t = next_open(ws, at)
    end = closes_at(ws, t)
    assert end is not None
    assert end > t
    inside = t + (end - t) * f
    if inside < end:
        assert is_open(ws, inside)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    ws = tuple(draw(st.lists(windows(), max_size=2)))
    freeze = None
    if draw(st.booleans()):
        start = draw(st.none() | instants)
        until = (start or draw(instants)) + timedelta(hours=draw(st.integers(1, 24 * 20)))
        freeze = Freeze(until=until, start=start, reason=draw(st.sampled_from(["", "audit"])))
    return Schedule(ws, freeze)


_FREEZE_AT = datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=UTC)  # a µs into a window's first minute


@settings(max_examples=400)
@given(s=schedules(), at=instants, f=st.floats(0, 1))
@example(  # Go for less than a second: the probe must stay at or after `at`
    s=Schedule(
        (Window(days=frozenset({0, 1, 2}), start=0, end=1, zone=ZoneInfo("UTC")),),
        Freeze(until=_FREEZE_AT + timedelta(hours=1), start=_FREEZE_AT, reason=""),
    ),
    at=datetime(2020, 1, 1, tzinfo=UTC),
    f=0.0,
)
def test_may_install_waits_exactly_until_installs_are_allowed(
    s: Schedule, at: datetime, f: float
) -> None:
    verdict = may_install(s, at=at)
    if isinstance(verdict, Go):
        if verdict.until is not None:
            assert verdict.until > at
            inside = at + (verdict.until - at) * f  # in [at, until); until itself is not Go
            last = verdict.until - timedelta(microseconds=1)  # >= at: until > at, to the µs
            assert isinstance(may_install(s, at=min(inside, last)), Go)
        return
    assert verdict.next_at > at
    assert isinstance(may_install(s, at=verdict.next_at), Go)
    between = at + (verdict.next_at - at) * f
    if between < verdict.next_at:
        assert isinstance(may_install(s, at=between), Wait)
    frozen = s.freeze is not None and s.freeze.active(at)
    assert verdict.code is (ReasonCode.FROZEN if frozen else ReasonCode.OUTSIDE_WINDOW)
    if verdict.code is ReasonCode.OUTSIDE_WINDOW:  # the reason holds: the window is shut
        assert not is_open(s.windows, at)
        assert verdict.until == verdict.next_at


@given(s=schedules(), at=instants)
def test_a_critical_release_passes_windows_and_freezes(s: Schedule, at: datetime) -> None:
    assert may_install(s, at=at, critical=True) == Go()


# -- freeze and verdicts, spelled out -------------------------------------------------------------


def test_a_freeze_stops_installs_between_its_ends() -> None:
    f = Freeze(until=utc(2025, 1, 10), start=utc(2025, 1, 5), reason="year-end audit")
    s = Schedule(freeze=f)
    assert may_install(s, at=utc(2025, 1, 1)) == Go(until=utc(2025, 1, 5))
    wait = may_install(s, at=utc(2025, 1, 5))
    assert wait == Wait(
        ReasonCode.FROZEN,
        "frozen until 2025-01-10 00:00:00 UTC: year-end audit",
        utc(2025, 1, 10),
        utc(2025, 1, 10),
    )
    assert may_install(s, at=utc(2025, 1, 10)) == Go()
    now = Freeze(until=utc(2025, 1, 10))
    wait = may_install(Schedule(freeze=now), at=utc(2024, 12, 1))
    assert isinstance(wait, Wait)
    assert wait.message == "frozen until 2025-01-10 00:00:00 UTC"


def test_a_freeze_over_the_next_window_moves_the_next_install_past_it() -> None:
    w = (parse_window("daily 02:00-04:00"),)
    f = Freeze(until=utc(2025, 1, 3, 12), start=utc(2025, 1, 2, 0))
    at = utc(2025, 1, 1, 12)  # closed; the next window (Jan 2 02:00) falls in the freeze
    wait = may_install(Schedule(w, f), at=at)
    assert isinstance(wait, Wait)
    assert wait.code is ReasonCode.OUTSIDE_WINDOW
    assert wait.next_at == utc(2025, 1, 4, 2)
    assert wait.message == "outside maintenance window (next: 2025-01-04 02:00:00 UTC)"
    frozen = may_install(Schedule(w, f), at=utc(2025, 1, 3, 3))  # window open, but frozen
    assert isinstance(frozen, Wait)
    assert frozen.code is ReasonCode.FROZEN
    assert (frozen.until, frozen.next_at) == (utc(2025, 1, 3, 12), utc(2025, 1, 4, 2))


def test_an_open_window_goes_until_it_closes_or_a_freeze_starts() -> None:
    w = (parse_window("daily 02:00-04:00"),)
    at = utc(2025, 1, 1, 2, 30)
    assert may_install(Schedule(w), at=at) == Go(until=utc(2025, 1, 1, 4))
    f = Freeze(until=utc(2025, 1, 2), start=utc(2025, 1, 1, 3))
    assert may_install(Schedule(w, f), at=at) == Go(until=utc(2025, 1, 1, 3))
    later = Freeze(until=utc(2025, 1, 3), start=utc(2025, 1, 2))
    assert may_install(Schedule(w, later), at=at) == Go(until=utc(2025, 1, 1, 4))
    past = Freeze(until=utc(2024, 1, 3), start=utc(2024, 1, 2))
    assert may_install(Schedule(w, past), at=at) == Go(until=utc(2025, 1, 1, 4))
