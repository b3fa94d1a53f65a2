"""CLOCK: wall time and the seed's tm conventions."""

from __future__ import annotations

import calendar
import datetime
import time

import pytest

from miragekit import v1
from miragekit.clock import Clock


def test_conforms() -> None:
    c: v1.Clock = Clock()
    assert isinstance(c.time(), float)


def test_time_is_the_wall_clock() -> None:
    before = time.time()
    now = Clock().time()
    after = time.time()
    assert before <= now <= after


def test_time_source_is_injectable() -> None:
    ticks = iter([100.0, 200.5])
    c = Clock(lambda: next(ticks))
    assert c.time() == 100.0
    assert c.time() == 200.5


def test_epoch() -> None:
    assert Clock().gmtime(0) == v1.Tm(
        tm_sec=0,
        tm_min=0,
        tm_hour=0,
        tm_mday=1,
        tm_mon=0,
        tm_year=70,
        tm_wday=4,  # 1970-01-01 was a Thursday
        tm_yday=0,
        tm_isdst=False,
    )


def test_known_dates() -> None:
    # 2000-02-29 12:34:56 UTC, a Tuesday, day 59 of a leap year.
    t = calendar.timegm((2000, 2, 29, 12, 34, 56))
    tm = Clock().gmtime(t + 0.999)
    assert (tm.tm_year, tm.tm_mon, tm.tm_mday) == (100, 1, 29)
    assert (tm.tm_hour, tm.tm_min, tm.tm_sec) == (12, 34, 56)
    assert tm.tm_wday == 2
    assert tm.tm_yday == 59
    # 2023-12-31 was a Sunday: wday 0, yday 364.
    tm = Clock().gmtime(calendar.timegm((2023, 12, 31, 23, 59, 59)))
    assert (tm.tm_wday, tm.tm_yday, tm.tm_mon, tm.tm_year) == (0, 364, 11, 123)
    # Leap year's last day is yday 365.
    assert Clock().gmtime(calendar.timegm((2024, 12, 31, 0, 0, 0))).tm_yday == 365


def test_against_datetime_over_many_days() -> None:
    c = Clock()
    for day in range(0, 30000, 37):
        t = day * 86400 + (day * 977) % 86400
        d = datetime.datetime.fromtimestamp(t, datetime.UTC)
        tm = c.gmtime(t)
        assert tm.tm_year + 1900 == d.year
        assert tm.tm_mon + 1 == d.month
        assert tm.tm_mday == d.day
        assert (tm.tm_hour, tm.tm_min, tm.tm_sec) == (d.hour, d.minute, d.second)
        assert tm.tm_wday == d.isoweekday() % 7
        assert tm.tm_yday == d.timetuple().tm_yday - 1
        assert tm.tm_isdst is False


def test_negative_times_round_down() -> None:
    tm = Clock().gmtime(-0.5)
    assert (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) == (
        69,
        11,
        31,
        23,
        59,
        59,
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300])
def test_unrepresentable_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="t "):
        Clock().gmtime(bad)


def test_non_number_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="t must"):
        Clock().gmtime("0")  # type: ignore[arg-type]
