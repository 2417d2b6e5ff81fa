"""Planner.plan keeps its answer for the window it holds in (from the latest occurrence up to
the next), so a burst of configurations walks the calendar once. The cached answers must equal
the computed ones at every time, and a policy deleted and created again under its name (its
revision starts again at 1) must not be served the old policy's schedule."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from dpvault.protection.planning import Planner
from dpvault.store import ResourceRow
from tests.support import policy_body

KEY = "/subscriptions/s/resourcegroups/rg/providers/microsoft.dataprotection/backupvaults/v/backuppolicies/p"
DAY = 86400.0


def _policy_row(body: dict[str, Any], *, revision: int = 1, updated_at: float = 1.0) -> ResourceRow:
    return ResourceRow(
        pk=1, key=KEY, kind="backupPolicies", subscription="s", rg_key="rg", parent_key="v", name="p",
        body=json.dumps({"name": "p", **body}).encode(), state="Succeeded", active_operation=None,
        revision=revision, created_at=updated_at, updated_at=updated_at,
    )  # fmt: skip


def _two_schedules() -> dict[str, Any]:
    body = policy_body()
    weekly = body["properties"]["policyRules"][0]
    daily = copy.deepcopy(weekly)
    daily["name"] = "BackupDaily"
    daily["trigger"]["schedule"]["repeatingTimeIntervals"] = ["R/2021-08-15T02:00:00+00:00/P1D"]
    body["properties"]["policyRules"].insert(1, daily)
    return body


def _protection() -> Planner:
    return Planner()


def test_cached_plans_equal_computed_plans_at_every_time() -> None:
    row = _policy_row(_two_schedules())
    cached, fresh = _protection(), _protection()
    rng = random.Random(7)
    start = 1_700_000_000.0
    times = sorted(start + rng.uniform(0, 40 * DAY) for _ in range(400))
    # exactly on occurrences too: the window's ends
    exact = [t for t in (fresh.plan(row, x)[2] for x in times[:20]) if t is not None]
    for now in [*times, *exact, *(t - 1e-6 for t in exact)]:
        expected = _protection().plan(row, now)  # a new Planner: nothing cached
        assert cached.plan(row, now) == expected, now
    assert len(cached._plans) == 1  # one window kept per policy version


def test_a_policy_created_again_under_its_name_gets_its_own_schedule() -> None:
    now = 1_700_000_000.0
    protection = _protection()
    weekly = _policy_row(policy_body(), revision=1, updated_at=10.0)
    daily_body = policy_body()
    daily_body["properties"]["policyRules"][0]["trigger"]["schedule"]["repeatingTimeIntervals"] = [
        "R/2021-08-15T06:30:00+00:00/P1D"
    ]
    recreated = _policy_row(daily_body, revision=1, updated_at=20.0)  # same key, same revision
    weekly_next = protection.plan(weekly, now)[2]
    daily_next = protection.plan(recreated, now)[2]
    assert weekly_next is not None and daily_next is not None
    assert protection.plan(weekly, weekly_next)[2] == weekly_next + 7 * DAY
    assert protection.plan(recreated, daily_next)[2] == daily_next + DAY
