"""Time as dpvault sees it. Everything that stamps or schedules asks a Clock, so tests can control time."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z and 7 fractional digits, the way Azure writes times."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
