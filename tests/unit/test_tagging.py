"""Retention tags from tagging criteria, and expiry from retention rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from dpvault.model.policies.schema import BackupPolicy, TaggingCriteria
from dpvault.model.policies.tagging import choose_tag, retention_for


def criteria(*items: dict) -> list[TaggingCriteria]:
    return msgspec.convert(list(items), list[TaggingCriteria])


DEFAULT = {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}}


def crit(tag: str, priority: int, **fields: object) -> dict:
    return {"isDefault": False, "taggingPriority": priority, "tagInfo": {"tagName": tag},
            "criteria": [{"objectType": "ScheduleBasedBackupCriteria", **fields}]}  # fmt: skip


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_default_when_nothing_matches() -> None:
    assert (
        choose_tag(criteria(DEFAULT, crit("Weekly", 20, daysOfTheWeek=["Sunday"])), at(2024, 3, 5, 2), [])
        == "Default"
    )


def test_lowest_priority_number_wins() -> None:
    cs = criteria(
        DEFAULT,
        crit("Monthly", 15, absoluteCriteria=["FirstOfMonth"]),
        crit("Weekly", 20, absoluteCriteria=["FirstOfWeek"]),
    )
    assert choose_tag(cs, at(2024, 3, 1, 2), []) == "Monthly"
    cs = criteria(
        DEFAULT,
        crit("Monthly", 25, absoluteCriteria=["FirstOfMonth"]),
        crit("Weekly", 20, absoluteCriteria=["FirstOfWeek"]),
    )
    assert choose_tag(cs, at(2024, 3, 1, 2), []) == "Weekly"


def test_first_of_day_week_month_year_look_at_earlier_points() -> None:
    day = criteria(DEFAULT, crit("Daily", 10, absoluteCriteria=["FirstOfDay"]))
    assert choose_tag(day, at(2024, 3, 5, 8), [at(2024, 3, 4, 8)]) == "Daily"
    assert choose_tag(day, at(2024, 3, 5, 8), [at(2024, 3, 5, 2)]) == "Default"
    week = criteria(DEFAULT, crit("Weekly", 10, absoluteCriteria=["FirstOfWeek"]))
    assert (
        choose_tag(week, at(2024, 3, 6, 2), [at(2024, 3, 4, 2)]) == "Default"
    )  # Monday was earlier that week
    assert (
        choose_tag(week, at(2024, 3, 11, 2), [at(2024, 3, 10, 2)]) == "Weekly"
    )  # Sunday belongs to the week before
    year = criteria(DEFAULT, crit("Yearly", 5, absoluteCriteria=["FirstOfYear"]))
    assert choose_tag(year, at(2025, 1, 1, 2), [at(2024, 12, 31, 2)]) == "Yearly"
    assert choose_tag(year, at(2025, 1, 2, 2), [at(2025, 1, 1, 2)]) == "Default"


def test_calendar_fields() -> None:
    cs = criteria(DEFAULT, crit("LastFri", 10, daysOfTheWeek=["Friday"], weeksOfTheMonth=["Last"]))
    assert choose_tag(cs, at(2024, 3, 29, 2), []) == "LastFri"
    assert choose_tag(cs, at(2024, 3, 22, 2), []) == "Default"
    cs = criteria(
        DEFAULT,
        crit("MonthEnd", 10, daysOfMonth=[{"isLast": True}]),
        crit("Fifteenth", 11, daysOfMonth=[{"date": 15}]),
    )
    assert choose_tag(cs, at(2024, 2, 29, 2), []) == "MonthEnd"
    assert choose_tag(cs, at(2024, 2, 15, 2), []) == "Fifteenth"
    cs = criteria(
        DEFAULT,
        crit("Jan", 10, monthsOfYear=["January"], weeksOfTheMonth=["First"], daysOfTheWeek=["Monday"]),
    )
    assert choose_tag(cs, at(2024, 1, 1, 2), []) == "Jan"
    assert choose_tag(cs, at(2024, 1, 8, 2), []) == "Default"


def test_retention_picks_the_rule_of_the_tag_and_the_data_store() -> None:
    store = {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"}
    policy = msgspec.convert(
        {
            "objectType": "BackupPolicy",
            "datasourceTypes": ["OssDB"],
            "policyRules": [
                {"objectType": "AzureRetentionRule", "name": "Default", "isDefault": True,
                 "lifecycles": [{"sourceDataStore": store, "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P3D"}}]},
                {"objectType": "AzureRetentionRule", "name": "Monthly",
                 "lifecycles": [{"sourceDataStore": {**store, "dataStoreType": "ArchiveStore"}, "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P1Y"}},
                                {"sourceDataStore": store, "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P6M"}}]},
            ],
        },
        BackupPolicy,
    )  # fmt: skip
    text, duration = retention_for(policy, "Monthly", "VaultStore")  # type: ignore[misc]
    assert text == "P6M"
    assert at(2024, 1, 31) + duration == at(2024, 7, 31)
    text, duration = retention_for(policy, "Unknown", "VaultStore")  # type: ignore[misc]
    assert text == "P3D" and at(2024, 1, 1) + duration == at(2024, 1, 1) + timedelta(days=3)
