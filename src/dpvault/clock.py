"""Time as dpvault sees it.

Business time (resource timestamps, schedules, retention) comes from a :class:`Clock`. The real
clock is the default; ``serve --clock manual`` uses a :class:`ManualClock` that only moves when told
(``POST /dpvault/clock/advance``), so users' tests can fast-forward through weeks of schedules.
Queue mechanics (leases, retries) always use real time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """The real clock."""

    manual = False

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


class ManualClock(Clock):
    """A clock that stands still until advanced. Its value is kept in the database (see
    ``protection.timekeeper``) so every process sharing the database agrees on the time."""

    manual = True

    def __init__(self, start: float) -> None:
        self._now = start

    def time(self) -> float:
        return self._now

    def set(self, value: float) -> None:
        # Time never runs backwards.
        self._now = max(self._now, value)


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z and 7 fractional digits, the way Azure writes times."""
    m = moment.astimezone(UTC)
    # Fields by hand: strftime costs several times more, on every resource body written.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond:06d}0Z"
    )


def from_timestamp(value: float) -> str:
    return isoformat(datetime.fromtimestamp(value, UTC))
