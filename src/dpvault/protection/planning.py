"""When an instance's backups are due: a policy's schedules (ISO 8601 repeating intervals in the
schedule's time zone), the latest occurrence at or before a moment and the next one after it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dpvault.model.policies.rules import decode_policy
from dpvault.model.policies.schedule import RepeatingInterval, parse_repeating_interval, zone
from dpvault.model.policies.schema import AzureBackupRule, BackupPolicy, ScheduleBasedTriggerContext
from dpvault.store import ResourceRow

# (latest occurrence at or before now, the rule it belongs to, the next occurrence after now)
Plan = tuple[float | None, str | None, float | None]


@dataclass(frozen=True)
class Schedule:
    rule: AzureBackupRule
    intervals: list[RepeatingInterval]

    def latest_at_or_before(self, t: float) -> float | None:
        moment = datetime.fromtimestamp(t, UTC)
        found = [
            o for o in (_bounded(i.latest_at_or_before, moment) for i in self.intervals) if o is not None
        ]
        return max(found).timestamp() if found else None

    def next_after(self, t: float) -> float | None:
        moment = datetime.fromtimestamp(t, UTC)
        found = [o for o in (_bounded(i.next_after, moment) for i in self.intervals) if o is not None]
        return min(found).timestamp() if found else None


def _bounded(step: Any, moment: datetime) -> datetime | None:
    """An occurrence past year 9999 (or before year 1) does not exist: there is none."""
    try:
        return step(moment)  # type: ignore[no-any-return]
    except OverflowError:
        return None


def schedules(policy: BackupPolicy) -> list[Schedule]:
    out = []
    for rule in policy.policyRules:
        if isinstance(rule, AzureBackupRule) and isinstance(rule.trigger, ScheduleBasedTriggerContext):
            tz = zone(rule.trigger.schedule.timeZone)
            intervals = [
                parse_repeating_interval(t).in_zone(tz) for t in rule.trigger.schedule.repeatingTimeIntervals
            ]
            out.append(Schedule(rule, intervals))
    return out


def _version(policy_row: ResourceRow) -> tuple[str, int, float]:
    """What tells one version of a policy's row from another (``updated_at``: a policy deleted and
    created again under its name starts at revision 1 again)."""
    return policy_row.key, policy_row.revision, policy_row.updated_at


class Planner:
    """Plans, with the parsing and the calendar walk cached per version of a policy."""

    def __init__(self) -> None:
        self._schedules: dict[tuple[str, int, float], list[Schedule]] = {}
        self._plans: dict[tuple[str, int, float], tuple[float, float, Plan]] = {}

    def schedules_of(self, policy_row: ResourceRow) -> list[Schedule]:
        """A policy's parsed schedules (parsing ISO 8601 is not free)."""
        key = _version(policy_row)
        found = self._schedules.get(key)
        if found is None:
            if len(self._schedules) > 4096:
                self._schedules.clear()
                self._plans.clear()
            found = self._schedules[key] = schedules(decode_policy(policy_row.body).properties)
        return found

    def plan(self, policy_row: ResourceRow, now: float) -> Plan:
        """(latest occurrence at or before ``now``, the rule it belongs to, the next one after ``now``)
        over all of a policy's schedules.

        The answer is the same for any time from that latest occurrence up to the next one, so it
        is kept for that window: configuring a burst of instances walks the calendar once (the
        walk was ~10% of a PUT's work, bench P1)."""
        schedules_ = self.schedules_of(policy_row)
        key = _version(policy_row)
        cached = self._plans.get(key)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        latest: float | None = None
        rule_name: str | None = None
        nexts = []
        for schedule in schedules_:
            occurrence = schedule.latest_at_or_before(now)
            if occurrence is not None and (latest is None or occurrence > latest):
                latest, rule_name = occurrence, schedule.rule.name
            nexts.append(schedule.next_after(now))
        next_due = min((n for n in nexts if n is not None), default=None)
        result = (latest, rule_name, next_due)
        self._plans[key] = (
            -math.inf if latest is None else latest,
            math.inf if next_due is None else next_due,
            result,
        )
        return result
