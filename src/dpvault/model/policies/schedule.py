"""ISO 8601 schedules and durations as Azure Backup policies write them.

``R/2023-06-01T02:30:00+00:00/P1W`` is unbounded, ``R3/...`` has three occurrences. Occurrence k is
``start + k * step`` in calendar arithmetic (relativedelta), never the step added k times, so
``P1M`` from the 31st does not drift (stack.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aniso8601
from aniso8601.exceptions import ISOFormatError
from relativetimebuilder import RelativeTimeBuilder


class ScheduleError(ValueError):
    pass


def _positive(step: Any) -> bool:
    probe = datetime(2001, 1, 1, tzinfo=UTC)
    return probe + step > probe


def parse_duration(text: str) -> Any:
    """A timedelta or relativedelta; raises ScheduleError unless it is a positive ISO 8601 duration."""
    try:
        value = aniso8601.parse_duration(text, builder=RelativeTimeBuilder)
    except (ISOFormatError, ValueError, NotImplementedError, TypeError, OverflowError) as exc:
        raise ScheduleError(
            f"'{text}' is not an ISO 8601 duration such as P1D, PT4H, P1W or P3M ({exc})"
        ) from None
    try:
        positive = _positive(value)
    except (ValueError, OverflowError):
        raise ScheduleError(f"the duration '{text}' is too long") from None
    if not positive:
        raise ScheduleError(f"the duration '{text}' must be longer than zero")
    return value


@dataclass(frozen=True)
class RepeatingInterval:
    start: datetime
    step: Any
    repetitions: int | None  # None: unbounded

    def occurrence(self, k: int) -> datetime:
        return self.start + self.step * k if isinstance(self.step, timedelta) else self.start + k * self.step

    def in_zone(self, zone: tzinfo | None) -> RepeatingInterval:
        """The same schedule stepping in ``zone``'s wall time (DST-aware), when a timeZone is given."""
        if zone is None:
            return self
        return RepeatingInterval(self.start.astimezone(zone), self.step, self.repetitions)

    def _index_at_or_before(self, moment: datetime) -> int | None:
        """The largest k with occurrence(k) <= moment, or None if the schedule has not started."""
        if moment < self.start:
            return None
        probe = self.occurrence(1) - self.start
        k = max(0, int((moment - self.start) / probe)) if probe > timedelta(0) else 0
        while k > 0 and self.occurrence(k) > moment:
            k -= 1
        while self.occurrence(k + 1) <= moment:
            k += 1
        if self.repetitions is not None:
            k = min(k, self.repetitions - 1)
        return k

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        k = self._index_at_or_before(moment)
        return None if k is None else self.occurrence(k)

    def next_after(self, moment: datetime) -> datetime | None:
        k = self._index_at_or_before(moment)
        nxt = 0 if k is None else k + 1
        if self.repetitions is not None and nxt >= self.repetitions:
            return None
        return self.occurrence(nxt)


def parse_repeating_interval(text: str) -> RepeatingInterval:
    parts = text.split("/")
    if len(parts) != 3 or not parts[0].upper().startswith("R"):
        raise ScheduleError(
            f"'{text}' is not an ISO 8601 repeating interval of the form R[n]/<start>/<duration>, "
            "e.g. R/2023-06-01T02:30:00+00:00/P1W"
        )
    count = parts[0][1:]
    if count and not (count.isascii() and count.isdigit()):
        raise ScheduleError(f"'{text}': the repetition count '{parts[0]}' must be R or Rn with n a number")
    try:
        start = aniso8601.parse_datetime(parts[1])
    except (ISOFormatError, ValueError, NotImplementedError, TypeError) as exc:
        raise ScheduleError(
            f"'{text}': the start '{parts[1]}' is not an ISO 8601 date-time ({exc})"
        ) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    step = parse_duration(parts[2])
    repetitions = int(count) if count else None
    if repetitions == 0:
        raise ScheduleError(f"'{text}': R0 never repeats")
    return RepeatingInterval(start, step, repetitions)


def parse_datetime(text: str) -> datetime:
    try:
        return aniso8601.parse_datetime(text)
    except (ISOFormatError, ValueError, NotImplementedError, TypeError) as exc:
        raise ScheduleError(f"'{text}' is not an ISO 8601 date-time ({exc})") from None


# Windows time zone ids Azure policies carry, mapped to IANA zones; IANA names are accepted as they are.
_WINDOWS_ZONES = {
    "utc": "UTC",
    "coordinated universal time": "UTC",
    "gmt standard time": "Europe/London",
    "greenwich standard time": "Atlantic/Reykjavik",
    "w. europe standard time": "Europe/Berlin",
    "central europe standard time": "Europe/Budapest",
    "central european standard time": "Europe/Warsaw",
    "romance standard time": "Europe/Paris",
    "e. europe standard time": "Europe/Chisinau",
    "russian standard time": "Europe/Moscow",
    "india standard time": "Asia/Kolkata",
    "china standard time": "Asia/Shanghai",
    "tokyo standard time": "Asia/Tokyo",
    "singapore standard time": "Asia/Singapore",
    "aus eastern standard time": "Australia/Sydney",
    "eastern standard time": "America/New_York",
    "central standard time": "America/Chicago",
    "mountain standard time": "America/Denver",
    "pacific standard time": "America/Los_Angeles",
    "alaskan standard time": "America/Anchorage",
    "hawaiian standard time": "Pacific/Honolulu",
    "e. south america standard time": "America/Sao_Paulo",
}


def zone(name: str | None) -> tzinfo | None:
    """The zone a policy's ``timeZone`` names, or None (use the start time's own offset)."""
    if not name:
        return None
    candidate = _WINDOWS_ZONES.get(name.strip().lower(), name.strip())
    try:
        return ZoneInfo(candidate)
    except (ZoneInfoNotFoundError, ValueError):
        return None
