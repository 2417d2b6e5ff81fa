"""Which retention tag a recovery point gets, and when it expires.

Tagging criteria are tried in ascending ``taggingPriority`` (the spec example has Weekly = 20 and
Default = 99); the first non-default criterion that matches wins, otherwise the ``isDefault`` tag.
A criterion matches when any of its ScheduleBasedBackupCriteria matches, and one of those matches
when every field it sets matches. ``FirstOfDay/Week/Month/Year`` mean "no earlier recovery point of
this instance in the same day/week (Monday-based)/month/year", in the schedule's time zone.
The tag's name selects the AzureRetentionRule of the same name; its lifecycle for the data store
the backup went to gives ``deleteAfter``.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import datetime

from dpvault.model.policies.schedule import parse_duration
from dpvault.model.policies.schema import (
    AzureRetentionRule,
    BackupPolicy,
    ScheduleBasedBackupCriteria,
    TaggingCriteria,
)

_WEEKS = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4}


def _same(period: str, a: datetime, b: datetime) -> bool:
    if period == "FirstOfDay":
        return a.date() == b.date()
    if period == "FirstOfWeek":
        return a.isocalendar()[:2] == b.isocalendar()[:2]
    if period == "FirstOfMonth":
        return (a.year, a.month) == (b.year, b.month)
    if period == "FirstOfYear":
        return a.year == b.year
    return False


def _matches(item: ScheduleBasedBackupCriteria, when: datetime, earlier: Sequence[datetime]) -> bool:
    if item.absoluteCriteria:
        ok = False
        for marker in item.absoluteCriteria:
            if marker == "AllBackup" or not any(_same(marker, when, e) for e in earlier):
                ok = True
        if not ok:
            return False
    if item.daysOfTheWeek and calendar.day_name[when.weekday()] not in item.daysOfTheWeek:
        return False
    if item.monthsOfYear and calendar.month_name[when.month] not in item.monthsOfYear:
        return False
    if item.weeksOfTheMonth:
        last_day = calendar.monthrange(when.year, when.month)[1]
        week_ok = any(
            (w == "Last" and when.day > last_day - 7) or (_WEEKS.get(w) == (when.day - 1) // 7 + 1)
            for w in item.weeksOfTheMonth
        )
        if not week_ok:
            return False
    if item.daysOfMonth:
        last_day = calendar.monthrange(when.year, when.month)[1]
        if not any((d.isLast and when.day == last_day) or (d.date == when.day) for d in item.daysOfMonth):
            return False
    return True


def choose_tag(criteria: Sequence[TaggingCriteria], when: datetime, earlier: Sequence[datetime]) -> str:
    """The tag for a recovery point taken at ``when`` (local time), given the instance's earlier points."""
    default = next((c.tagInfo.tagName for c in criteria if c.isDefault), "Default")
    for crit in sorted((c for c in criteria if not c.isDefault), key=lambda c: c.taggingPriority):
        if any(_matches(item, when, earlier) for item in crit.criteria or []):
            return crit.tagInfo.tagName
    return default


def retention_for(policy: BackupPolicy, tag: str, data_store: str) -> tuple[str, object] | None:
    """(duration text, duration) the tag's retention rule keeps points in ``data_store``, or None (keep)."""
    rules = [r for r in policy.policyRules if isinstance(r, AzureRetentionRule)]
    rule = next((r for r in rules if r.name.lower() == tag.lower()), None)
    if rule is None:
        rule = next((r for r in rules if r.isDefault), None)
    if rule is None or not rule.lifecycles:
        return None
    lifecycle = next(
        (lc for lc in rule.lifecycles if lc.sourceDataStore.dataStoreType == data_store), rule.lifecycles[0]
    )
    text = lifecycle.deleteAfter.duration
    return text, parse_duration(text)
