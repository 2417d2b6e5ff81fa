"""resources/policies/schedule.py: ISO 8601 repeating intervals and durations (stack.md §4).

Occurrence k is ``start + k * step`` in calendar arithmetic, never the step added k times, so a
monthly schedule from the 31st lands on the last day of short months and returns to the 31st; the
start's UTC offset is kept; ``Rn`` has n occurrences. Every bad input raises ScheduleError (a
ValueError) whose text names the input and says what was expected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta

from dpvault.model.policies.schedule import (
    RepeatingInterval,
    ScheduleError,
    parse_datetime,
    parse_duration,
    parse_repeating_interval,
    zone,
)

IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))


def bug(
    reason: str, raises: type[BaseException] | tuple[type[BaseException], ...] | None = None
) -> pytest.MarkDecorator:
    """A known bug: the test asserts the correct behaviour and must fail (with ``raises``, only that way)."""
    return pytest.mark.xfail(strict=True, raises=raises, reason=f"BUG: {reason}")


# -- occurrences --------------------------------------------------------------------------------


def test_monthly_from_the_31st_does_not_drift() -> None:
    schedule = parse_repeating_interval("R/2023-01-31T02:30:00+05:30/P1M")
    expected_days = [
        (2023, 1, 31), (2023, 2, 28), (2023, 3, 31), (2023, 4, 30), (2023, 5, 31), (2023, 6, 30),
        (2023, 7, 31), (2023, 8, 31), (2023, 9, 30), (2023, 10, 31), (2023, 11, 30), (2023, 12, 31),
        (2024, 1, 31), (2024, 2, 29), (2024, 3, 31),
    ]  # fmt: skip
    got = [schedule.occurrence(k) for k in range(len(expected_days))]
    assert got == [datetime(y, m, d, 2, 30, tzinfo=IST) for y, m, d in expected_days]
    assert all(o.utcoffset() == timedelta(hours=5, minutes=30) for o in got)
    # Adding the step repeatedly would drift to the 28th for good; occurrence(k) never does.
    repeated = schedule.start + schedule.step + schedule.step
    assert repeated.day == 28
    assert schedule.occurrence(2).day == 31


def test_far_occurrences_are_computed_directly() -> None:
    schedule = parse_repeating_interval("R/2023-01-31T02:30:00Z/P1M")
    assert schedule.occurrence(12 * 100 + 1) == datetime(2123, 2, 28, 2, 30, tzinfo=UTC)
    assert schedule.occurrence(12 * 100 + 2) == datetime(2123, 3, 31, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "offset"),
    [
        ("R/2019-11-20T08:00:00-08:00/P1W", datetime(2019, 11, 20, 8, tzinfo=PST), timedelta(hours=-8)),
        ("R/2023-01-31T02:30:00+05:30/P1M", datetime(2023, 1, 31, 2, 30, tzinfo=IST), timedelta(hours=5.5)),
        ("R/2023-06-01T02:30:00Z/P1D", datetime(2023, 6, 1, 2, 30, tzinfo=UTC), timedelta(0)),
        ("R/2023-06-01T02:30:00+00:00/P1D", datetime(2023, 6, 1, 2, 30, tzinfo=UTC), timedelta(0)),
        # No offset: UTC is assumed (the schedule must be comparable with the clock).
        ("R/2023-06-01T02:30:00/P1D", datetime(2023, 6, 1, 2, 30, tzinfo=UTC), timedelta(0)),
    ],
)
def test_the_start_and_its_offset_are_kept(text: str, start: datetime, offset: timedelta) -> None:
    schedule = parse_repeating_interval(text)
    assert schedule.start == start
    assert schedule.start.utcoffset() == offset
    assert schedule.occurrence(0) == start
    assert all(schedule.occurrence(k).utcoffset() == offset for k in range(1, 6))


def test_weekly() -> None:
    schedule = parse_repeating_interval("R/2023-06-01T02:30:00+00:00/P1W")
    assert [schedule.occurrence(k) for k in range(4)] == [
        datetime(2023, 6, d, 2, 30, tzinfo=UTC) for d in (1, 8, 15, 22)
    ]
    assert schedule.repetitions is None


def test_every_four_hours_crosses_midnight_and_month_ends() -> None:
    schedule = parse_repeating_interval("R/2023-06-30T14:30:00Z/PT4H")
    got = [schedule.occurrence(k) for k in range(5)]
    assert got == [
        datetime(2023, 6, 30, 14, 30, tzinfo=UTC),
        datetime(2023, 6, 30, 18, 30, tzinfo=UTC),
        datetime(2023, 6, 30, 22, 30, tzinfo=UTC),
        datetime(2023, 7, 1, 2, 30, tzinfo=UTC),
        datetime(2023, 7, 1, 6, 30, tzinfo=UTC),
    ]
    assert schedule.occurrence(6 * 365) - schedule.start == timedelta(days=365)


def test_yearly_from_the_29th_of_february() -> None:
    schedule = parse_repeating_interval("R/2024-02-29T02:30:00Z/P1Y")
    assert [schedule.occurrence(k).date().isoformat() for k in range(5)] == [
        "2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29",
    ]  # fmt: skip
    assert parse_repeating_interval("R/2024-02-29T02:30:00Z/P12M").occurrence(4) == schedule.occurrence(4)


def test_r3_has_exactly_three_occurrences() -> None:
    schedule = parse_repeating_interval("R3/2023-01-31T02:30:00+05:30/P1M")
    assert schedule.repetitions == 3
    moments: list[datetime] = []
    moment = datetime(2023, 1, 1, tzinfo=UTC)
    while (nxt := schedule.next_after(moment)) is not None:
        moments.append(nxt)
        moment = nxt
        assert len(moments) <= 3, moments
    assert moments == [datetime(2023, m, d, 2, 30, tzinfo=IST) for m, d in ((1, 31), (2, 28), (3, 31))]
    # Long after the end, the latest occurrence is still the third.
    assert schedule.latest_at_or_before(datetime(2030, 1, 1, tzinfo=UTC)) == moments[-1]


@pytest.mark.parametrize(("count", "n"), [("R1", 1), ("R2", 2), ("R10", 10), ("R03", 3)])
def test_rn_repetition_counts(count: str, n: int) -> None:
    schedule = parse_repeating_interval(f"{count}/2023-06-01T00:00:00Z/P1D")
    assert schedule.repetitions == n
    assert schedule.next_after(schedule.occurrence(n - 1)) is None
    if n > 1:
        assert schedule.next_after(schedule.occurrence(n - 2)) == schedule.occurrence(n - 1)


def test_next_after_and_latest_at_or_before() -> None:
    schedule = parse_repeating_interval("R/2023-01-31T02:30:00+05:30/P1M")
    mar31 = datetime(2023, 3, 31, 2, 30, tzinfo=IST)
    # Before the start.
    before = datetime(2022, 12, 1, tzinfo=UTC)
    assert schedule.latest_at_or_before(before) is None
    assert schedule.next_after(before) == schedule.start
    # Exactly on an occurrence: it is the latest, and the next one is strictly after it.
    assert schedule.latest_at_or_before(mar31) == mar31
    assert schedule.next_after(mar31) == datetime(2023, 4, 30, 2, 30, tzinfo=IST)
    # One second earlier.
    assert schedule.latest_at_or_before(mar31 - timedelta(seconds=1)) == datetime(
        2023, 2, 28, 2, 30, tzinfo=IST
    )
    assert schedule.next_after(mar31 - timedelta(seconds=1)) == mar31
    # Far ahead, given in another zone: still no drift.
    far = datetime(2033, 1, 1, tzinfo=UTC)
    assert schedule.latest_at_or_before(far) == datetime(2032, 12, 31, 2, 30, tzinfo=IST)
    assert schedule.next_after(far) == datetime(2033, 1, 31, 2, 30, tzinfo=IST)


def test_a_time_zone_keeps_the_wall_clock_time_across_daylight_saving() -> None:
    new_york = zone("Eastern Standard Time")
    assert new_york == ZoneInfo("America/New_York")
    schedule = parse_repeating_interval("R/2023-03-10T02:30:00-05:00/P1D").in_zone(new_york)
    local = [schedule.occurrence(k) for k in range(5)]
    assert [(o.day, o.hour, o.minute) for o in local] == [(d, 2, 30) for d in (10, 11, 12, 13, 14)]
    assert [o.utcoffset() for o in (local[0], local[4])] == [timedelta(hours=-5), timedelta(hours=-4)]
    assert schedule.in_zone(None) is schedule


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("UTC", "UTC"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("  india standard time ", "Asia/Kolkata"),
        ("Europe/Berlin", "Europe/Berlin"),
    ],
)
def test_time_zone_names(name: str, expected: str) -> None:
    assert zone(name) == ZoneInfo(expected)


@pytest.mark.parametrize("name", [None, "", "Not/AZone"])
def test_no_time_zone(name: str | None) -> None:
    assert zone(name) is None


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1D", relativedelta(days=1)),
        ("P30D", relativedelta(days=30)),
        ("PT4H", relativedelta(hours=4)),
        ("PT30M", relativedelta(minutes=30)),
        ("PT1H30M", relativedelta(hours=1, minutes=30)),
        ("P1W", relativedelta(days=7)),
        ("P12W", relativedelta(days=84)),
        ("P1M", relativedelta(months=1)),
        ("P3M", relativedelta(months=3)),
        ("P1Y", relativedelta(years=1)),
        ("P12M", relativedelta(years=1)),
        ("P1Y2M3DT4H5M6S", relativedelta(years=1, months=2, days=3, hours=4, minutes=5, seconds=6)),
        ("P0Y0M1D", relativedelta(days=1)),
    ],
)
def test_positive_durations(text: str, expected: relativedelta) -> None:
    value = parse_duration(text)
    probe = datetime(2023, 1, 31, tzinfo=UTC)
    assert probe + value == probe + expected
    assert probe + value > probe


def test_calendar_months_are_not_thirty_days() -> None:
    assert datetime(2023, 7, 1, tzinfo=UTC) + parse_duration("P1M") == datetime(2023, 8, 1, tzinfo=UTC)
    assert datetime(2023, 1, 1, tzinfo=UTC) + parse_duration("P1Y") == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["P0D", "PT0S", "P0Y", "PT0H0M0S", "P0W"])
def test_zero_durations_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError, match="must be longer than zero") as caught:
        parse_duration(text)
    assert f"'{text}'" in str(caught.value)


@pytest.mark.parametrize("text", ["-P1D", "P-1D", "PT-1H", "-PT4H"])
def test_negative_durations_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_duration(text)
    assert f"'{text}'" in str(caught.value)


@pytest.mark.parametrize("text", ["", "1 week", "7D", "P", "PT", "P1DT", "P2W3D", "P1E2D", "PT4X", "P1D "])
def test_malformed_durations_name_the_input_and_the_expected_form(text: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert f"'{text}'" in message
    assert "ISO 8601 duration" in message and "P1D" in message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "P10000Y",
        ),
        pytest.param(
            "PT99999999999999999999H",
        ),
        pytest.param(
            "P9999999999999999999999D",
        ),
    ],
)
def test_durations_too_long_to_represent_are_schedule_errors(text: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_duration(text)
    assert f"'{text}'" in str(caught.value)


# -- repeating intervals: errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("R/2021-08-15T06:30:00+00:00", "R[n]/<start>/<duration>"),
        ("2021-08-15T06:30:00Z/P1W", "R[n]/<start>/<duration>"),
        ("R/2021-08-15T06:30:00Z/P1D/P1D", "R[n]/<start>/<duration>"),
        ("", "R[n]/<start>/<duration>"),
        ("R/notadate/P1W", "'notadate' is not an ISO 8601 date-time"),
        ("R/2021-02-30T06:30:00Z/P1D", "is not an ISO 8601 date-time"),
        ("R/2021-08-15T25:30:00Z/P1D", "is not an ISO 8601 date-time"),
        ("R//P1D", "is not an ISO 8601 date-time"),
        ("R/2021-08-15T06:30:00Z/P0D", "'P0D' must be longer than zero"),
        ("R/2021-08-15T06:30:00Z/-P1D", "'-P1D' is not an ISO 8601 duration"),
        ("R/2021-08-15T06:30:00Z/1 week", "'1 week' is not an ISO 8601 duration"),
        ("R/2021-08-15T06:30:00Z/", "is not an ISO 8601 duration"),
        ("R0/2021-08-15T06:30:00Z/P1D", "R0 never repeats"),
        ("Rx/2021-08-15T06:30:00Z/P1D", "'Rx' must be R or Rn with n a number"),
        ("R-1/2021-08-15T06:30:00Z/P1D", "'R-1' must be R or Rn"),
        ("R+3/2021-08-15T06:30:00Z/P1D", "'R+3' must be R or Rn"),
        ("R 3/2021-08-15T06:30:00Z/P1D", "'R 3' must be R or Rn"),
        pytest.param(
            "R\u00b2/2021-08-15T06:30:00Z/P1D",
            "'R\u00b2' must be R or Rn",
            id="R-superscript-two",
        ),
        pytest.param(
            "R\u0661/2021-08-15T06:30:00Z/P1D",
            "'R\u0661' must be R or Rn",
            id="R-arabic-indic-one",
        ),
    ],
)
def test_bad_repeating_intervals_say_what_is_wrong(text: str, hint: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_repeating_interval(text)
    assert hint in str(caught.value)


def test_schedule_errors_are_value_errors() -> None:
    assert issubclass(ScheduleError, ValueError)


def test_repeating_interval_is_a_value() -> None:
    a = parse_repeating_interval("R3/2023-06-01T02:30:00Z/P1W")
    assert a == RepeatingInterval(datetime(2023, 6, 1, 2, 30, tzinfo=UTC), relativedelta(days=7), 3)
    with pytest.raises(AttributeError):
        a.repetitions = 4  # type: ignore[misc]


# -- date-times (scheduleTimes) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-03-01T13:00:00Z", datetime(2019, 3, 1, 13, tzinfo=UTC)),
        ("2019-03-01T13:00:00+05:30", datetime(2019, 3, 1, 13, tzinfo=IST)),
        ("2019-03-01T13:00:00", datetime(2019, 3, 1, 13)),
    ],
)
def test_date_times(text: str, expected: datetime) -> None:
    got = parse_datetime(text)
    assert got == expected
    assert got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["notadate", "", "2019-03-01", "13:00:00", "2019-13-01T13:00:00Z"])
def test_bad_date_times(text: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_datetime(text)
    assert f"'{text}' is not an ISO 8601 date-time" in str(caught.value)
