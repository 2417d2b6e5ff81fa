"""ISO 8601 schedules and durations as Azure Backup policies write them.

``R/2023-06-01T02:30:00+00:00/P1W`` is unbounded, ``R3/...`` has three occurrences. Occurrence k is
``start + k * step`` in calendar arithmetic (relativedelta), never the step added k times, so
``P1M`` from the 31st does not drift (stack.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
    except (ISOFormatError, ValueError, NotImplementedError, TypeError) as exc:
        raise ScheduleError(
            f"'{text}' is not an ISO 8601 duration such as P1D, PT4H, P1W or P3M ({exc})"
        ) from None
    if not _positive(value):
        raise ScheduleError(f"the duration '{text}' must be longer than zero")
    return value


@dataclass(frozen=True)
class RepeatingInterval:
    start: datetime
    step: Any
    repetitions: int | None  # None: unbounded

    def occurrence(self, k: int) -> datetime:
        return self.start + self.step * k if isinstance(self.step, timedelta) else self.start + k * self.step


def parse_repeating_interval(text: str) -> RepeatingInterval:
    parts = text.split("/")
    if len(parts) != 3 or not parts[0].upper().startswith("R"):
        raise ScheduleError(
            f"'{text}' is not an ISO 8601 repeating interval of the form R[n]/<start>/<duration>, "
            "e.g. R/2023-06-01T02:30:00+00:00/P1W"
        )
    count = parts[0][1:]
    if count and not count.isdigit():
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
