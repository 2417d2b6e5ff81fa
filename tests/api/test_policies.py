"""Backup Policies - Create Or Update, Get, Delete and List over HTTPS, and what makes a policy valid.

Policy PUT is synchronous: 200 for create and for replace, no Azure-AsyncOperation (the spec's
BackupPolicies_CreateOrUpdate answers only 200). Responses add the read-only ``tagInfo.id`` = ``"<tagName>_"``. Invalid trees get 400 with the
CloudError ``target`` set to the JSON path of the offending value: ``InvalidRequestContent`` when the JSON
does not have the spec's shape (types, required properties, ``objectType`` and enum values) and
``InvalidBackupPolicy`` when it has the shape but breaks a rule (schedules, durations, tags, defaults).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import API, SPEC, Env, instance_body, policy_body, vault_path, wait_operation

POLICY_TYPE = "Microsoft.DataProtection/backupVaults/backupPolicies"
Body = dict[str, Any]
Edit = Callable[[Body], Any]

# JSON paths into policy_body() (rule 0 is the AzureBackupRule, rule 1 the default AzureRetentionRule).
RULE0 = "properties.policyRules[0]"
RULE1 = "properties.policyRules[1]"
TRIGGER = f"{RULE0}.trigger"
TAGGING = f"{TRIGGER}.taggingCriteria"
INTERVALS = f"{TRIGGER}.schedule.repeatingTimeIntervals"
LIFECYCLE = f"{RULE1}.lifecycles[0]"
WEEKLY_CRITERIA = f"{TAGGING}[1].criteria[0]"


def policy_url(env: Env, name: str) -> str:
    return f"{env.vault_path}/backupPolicies/{name}?api-version={API}"


def assert_error(r: httpx.Response, code: str, target: str) -> dict[str, Any]:
    """A 400 CloudError with this code and JSON-path target."""
    assert r.status_code < 500, f"server error for an invalid policy: {r.status_code} {r.text}"
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert (error.get("code"), error.get("target")) == (code, target), error
    assert isinstance(error.get("message"), str) and error["message"], error
    return error


def assert_synchronous(r: httpx.Response) -> None:
    for header in ("Azure-AsyncOperation", "Location", "Retry-After"):
        assert header not in r.headers, (header, r.headers)


def with_tag_ids(body: Body) -> Body:
    """``body``'s properties as the service returns them: every tagInfo gets id "<tagName>_", no eTag."""
    props = copy.deepcopy(body["properties"])
    for rule in props["policyRules"]:
        trigger = rule.get("trigger")
        if trigger is None:
            continue
        criteria = trigger["taggingCriteria"]
        for item in criteria if isinstance(criteria, list) else [criteria]:
            if item.get("tagInfo") is not None:
                item["tagInfo"].pop("eTag", None)
                item["tagInfo"]["id"] = f"{item['tagInfo']['tagName']}_"
    return props


# -- body builders ------------------------------------------------------------------------------

DATASTORE = {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"}


def rules(body: Body) -> list[Body]:
    return body["properties"]["policyRules"]


def tagging(body: Body) -> list[Body]:
    return rules(body)[0]["trigger"]["taggingCriteria"]


def retention_rule(name: str, duration: str = "P12W", *, default: bool = False) -> Body:
    return {
        "objectType": "AzureRetentionRule",
        "name": name,
        "isDefault": default,
        "lifecycles": [
            {
                "sourceDataStore": dict(DATASTORE),
                "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": duration},
            }
        ],
    }


def weekly(body: Body, *, rule: bool = True, **criterion: Any) -> Body:
    """Add the spec example's "Weekly" tagging criterion (taggingCriteria[1]) and, with ``rule``, its
    retention rule (policyRules[2]). ``criterion`` overrides fields of the criterion."""
    item = {
        "isDefault": False,
        "taggingPriority": 20,
        "tagInfo": {"tagName": "Weekly"},
        "criteria": [
            {
                "objectType": "ScheduleBasedBackupCriteria",
                "daysOfTheWeek": ["Sunday"],
                "scheduleTimes": ["2019-03-01T13:00:00Z"],
            }
        ],
    }
    item.update(criterion)
    tagging(body).append(item)
    if rule:
        rules(body).append(retention_rule("Weekly"))
    return body


def criteria(**fields: Any) -> list[Body]:
    return [{"objectType": "ScheduleBasedBackupCriteria", **fields}]


def adhoc_rule(tag: str | None = "Default") -> Body:
    tagging_criteria: Body = {"tagInfo": {"tagName": tag}} if tag is not None else {}
    return {
        "objectType": "AzureBackupRule",
        "name": "OnDemand",
        "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Full"},
        "dataStore": dict(DATASTORE),
        "trigger": {"objectType": "AdhocBasedTriggerContext", "taggingCriteria": tagging_criteria},
    }


def copy_setting(copy_after: Body) -> list[Body]:
    return [
        {
            "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"},
            "copyAfter": copy_after,
        }
    ]


def at(path: str, value: Any) -> Edit:
    """An edit setting a dotted path (list items by index, "-" appends) of the body, or deleting it
    when ``value`` is DROP."""

    def edit(body: Body) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DROP:
            del node[int(last) if isinstance(node, list) else last]
        elif last == "-":
            node.append(copy.deepcopy(value))
        elif isinstance(node, list):
            node[int(last)] = copy.deepcopy(value)
        else:
            node[last] = copy.deepcopy(value)

    return edit


DROP = object()
P = "properties"
R0 = "properties.policyRules.0"
R1 = "properties.policyRules.1"
SCHEDULE = f"{R0}.trigger.schedule"
DELETE_AFTER = f"{R1}.lifecycles.0.deleteAfter"


def build(*edits: Edit) -> Body:
    body = policy_body()
    for edit in edits:
        edit(body)
    return body


# -- CRUD ---------------------------------------------------------------------------------------


def test_put_creates_with_200_synchronously_and_fills_tag_ids(env: Env) -> None:
    body = weekly(policy_body())
    r = env.client.put(policy_url(env, "Pg-Weekly"), json=body)
    assert r.status_code == 200, r.text
    assert_synchronous(r)
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    got = r.json()
    assert got["id"] == f"{env.vault_path}/backupPolicies/Pg-Weekly"
    assert got["name"] == "Pg-Weekly"
    assert got["type"] == POLICY_TYPE
    assert got["properties"] == with_tag_ids(body)
    assert [c["tagInfo"] for c in got["properties"]["policyRules"][0]["trigger"]["taggingCriteria"]] == [
        {"tagName": "Default", "id": "Default_"},
        {"tagName": "Weekly", "id": "Weekly_"},
    ]
    system = got["systemData"]
    assert system["createdBy"] and system["createdByType"] == "User"
    assert system["createdAt"] == system["lastModifiedAt"]
    again = env.client.get(policy_url(env, "Pg-Weekly"))
    assert again.status_code == 200, again.text
    assert again.json() == got


def test_put_replaces_with_200_keeping_created_and_the_casing_last_sent(env: Env) -> None:
    first = env.client.put(policy_url(env, "Replace-Me"), json=policy_body())
    assert first.status_code == 200, first.text
    changed = build(at(f"{DELETE_AFTER}.duration", "P6M"))
    r = env.client.put(policy_url(env, "REPLACE-me"), json=changed)
    assert r.status_code == 200, r.text
    assert_synchronous(r)
    got = r.json()
    assert got["name"] == "REPLACE-me"
    assert got["id"] == f"{env.vault_path}/backupPolicies/REPLACE-me"
    assert got["properties"] == with_tag_ids(changed)
    assert got["systemData"]["createdAt"] == first.json()["systemData"]["createdAt"]
    assert got["systemData"]["lastModifiedAt"] >= got["systemData"]["createdAt"]
    listed = env.client.get(f"{env.vault_path}/backupPolicies?api-version={API}").json()["value"]
    assert sorted(p["name"] for p in listed) == ["REPLACE-me", "policy1"]
    read = env.client.get(policy_url(env, "replace-ME")).json()
    assert read["properties"]["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] == "P6M"


def test_client_supplied_tag_id_and_etag_are_replaced(env: Env) -> None:
    body = build(
        at(f"{R0}.trigger.taggingCriteria.0.tagInfo", {"tagName": "Default", "id": "mine", "eTag": "W/1"})
    )
    r = env.client.put(policy_url(env, "tag-ids"), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["policyRules"][0]["trigger"]["taggingCriteria"][0]["tagInfo"] == {
        "tagName": "Default",
        "id": "Default_",
    }


def test_get_delete_then_absent_delete_is_204(env: Env) -> None:
    missing = env.client.get(policy_url(env, "nope"))
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "ResourceNotFound"
    assert env.client.put(policy_url(env, "gone"), json=policy_body()).status_code == 200
    r = env.client.delete(policy_url(env, "gone"))
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert_synchronous(r)
    assert env.client.get(policy_url(env, "gone")).status_code == 404
    again = env.client.delete(policy_url(env, "gone"))
    assert again.status_code == 204, again.text
    assert again.content == b""


def test_names_match_case_insensitively(env: Env) -> None:
    assert env.client.put(policy_url(env, "MixedCase"), json=policy_body()).status_code == 200
    upper = env.vault_path.replace("/backupVaults/", "/BACKUPVAULTS/")
    r = env.client.get(f"{upper}/BackupPolicies/MIXEDCASE?api-version={API}")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "MixedCase"
    assert r.json()["id"] == f"{env.vault_path}/backupPolicies/MixedCase"
    assert env.client.delete(policy_url(env, "mixedcase")).status_code == 200
    assert env.client.get(policy_url(env, "MixedCase")).status_code == 404


def test_list_is_paged_with_next_link(env: Env) -> None:
    names = ["policy1"] + [f"p-{i}" for i in range(4)]
    for name in names[1:]:
        assert env.client.put(policy_url(env, name), json=policy_body()).status_code == 200
    seen: list[str] = []
    url: str | None = f"{env.vault_path}/backupPolicies?api-version={API}&$top=2"
    pages = 0
    while url:
        r = env.client.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) <= {"value", "nextLink"}
        for item in page["value"]:
            assert item["type"] == POLICY_TYPE
            assert item["id"] == f"{env.vault_path}/backupPolicies/{item['name']}"
            assert item["properties"]["objectType"] == "BackupPolicy"
        seen += [p["name"] for p in page["value"]]
        url = page.get("nextLink")
        if url:
            assert url.startswith("https://") and "api-version=2023-01-01" in url, url
            assert "skipToken=" in url, url
        pages += 1
    assert seen == names
    assert pages == 3


def test_empty_list_is_200_with_empty_value(env: Env) -> None:
    assert env.client.delete(policy_url(env, env.policy)).status_code == 200
    r = env.client.get(f"{env.vault_path}/backupPolicies?api-version={API}")
    assert r.status_code == 200, r.text
    assert r.json() == {"value": []}


def test_put_into_a_missing_vault_is_404(client: httpx.Client) -> None:
    r = client.put(
        f"{vault_path('rg-no-vault-7c1', 'no-such-vault')}/backupPolicies/p?api-version={API}",
        json=policy_body(),
    )
    assert r.status_code == 404, r.text


def test_a_policy_in_use_cannot_be_deleted(env: Env) -> None:
    env.create_instance("uses-policy1")
    r = env.client.delete(policy_url(env, env.policy))
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "PolicyInUse"
    assert "uses-policy1" in r.json()["error"]["message"]
    assert env.client.get(policy_url(env, env.policy)).status_code == 200
    # Once the instance is gone the policy can go.
    gone = env.client.delete(f"{env.instance_path('uses-policy1')}?api-version={API}")
    assert gone.status_code == 202, gone.text
    assert wait_operation(env.client, gone.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    assert env.client.delete(policy_url(env, env.policy)).status_code == 200


def test_the_spec_example_is_accepted_and_answered_as_in_the_spec(env: Env) -> None:
    example = json.loads((SPEC / "examples" / "PolicyCRUD" / "CreateOrUpdateBackupPolicy.json").read_text())
    name = example["parameters"]["backupPolicyName"]
    r = env.client.put(policy_url(env, name), json=example["parameters"]["parameters"])
    assert r.status_code == 200, r.text
    assert_synchronous(r)
    expected = example["responses"]["200"]["body"]
    got = r.json()
    assert got["name"] == expected["name"] == name
    assert got["type"] == expected["type"]
    assert got["id"] == f"{env.vault_path}/backupPolicies/{name}"
    assert got["properties"] == expected["properties"]


# -- bad bodies that are not about policy rules -------------------------------------------------


@pytest.fixture(scope="module")
def shared(client: httpx.Client) -> Env:
    """One vault for the PUTs of the tables below: refused ones change nothing, accepted ones are named
    after the case."""
    return Env(client).create()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"properties": }',
        b'{"properties": {"objectType": "BackupPolicy"}} trailing',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"properties": {"objectType": "\xff"}}',
        b"null",
        b"[]",
    ],
    ids=["empty", "truncated", "syntax", "trailing", "deeply-nested", "not-utf8", "null", "array"],
)
def test_malformed_bodies_are_400_invalid_request_content(shared: Env, content: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    r = shared.client.put(policy_url(shared, "malformed"), content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidRequestContent"
    assert shared.client.get(policy_url(shared, "malformed")).status_code == 404


# -- invalid policy trees -----------------------------------------------------------------------

SCHEMA = "InvalidRequestContent"
RULE = "InvalidBackupPolicy"


def case(id_: str, edits: list[Edit] | Edit, target: str, code: str = RULE, bug: str = "") -> Any:
    """One invalid body (policy_body() with ``edits``) and the error it must get; ``bug`` marks a known
    server bug (the case asserts the correct behaviour and is expected to fail until it is fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(edits if isinstance(edits, list) else [edits], code, target, id=id_, marks=marks)


def weekly_edit(**criterion: Any) -> Edit:
    return lambda body: weekly(body, **criterion)


def interval(text: str) -> Edit:
    return at(f"{SCHEDULE}.repeatingTimeIntervals", [text])


def day_of_month(day: Body) -> Edit:
    return weekly_edit(criteria=criteria(daysOfMonth=[{"date": 1}, day]))


def schedule_time(value: Any) -> Edit:
    return weekly_edit(criteria=criteria(scheduleTimes=["2019-03-01T13:00:00Z", value]))


_BAD_COUNT = "ValueError from int() escapes parse_repeating_interval: a 500, not a 400"
_HUGE = "ValueError/OverflowError from the datetime probe in schedule._positive escapes as a 500"

INVALID = [
    # datasourceTypes and rules
    case("empty-datasourceTypes", at(f"{P}.datasourceTypes", []), "properties.datasourceTypes"),
    case("blank-datasourceType", at(f"{P}.datasourceTypes", ["  "]), "properties.datasourceTypes"),
    case("empty-policyRules", at(f"{P}.policyRules", []), "properties.policyRules"),
    case("duplicate-rule-name", at(f"{R1}.name", "BackupWeekly"), f"{RULE1}.name"),
    case("duplicate-rule-name-other-case", at(f"{R1}.name", "BACKUPweekly"), f"{RULE1}.name"),
    case(
        "duplicate-retention-rule-name",
        at(f"{P}.policyRules.-", retention_rule("default")),
        "properties.policyRules[2].name",
    ),
    case("empty-rule-name", at(f"{R0}.name", ""), f"{RULE0}.name"),
    case("no-default-retention-rule", at(f"{R1}.isDefault", False), "properties.policyRules"),
    case("isDefault-absent", at(f"{R1}.isDefault", DROP), "properties.policyRules"),
    case("no-retention-rule-at-all", at(f"{R1}", DROP), "properties.policyRules"),
    case(
        "two-default-retention-rules",
        at(f"{P}.policyRules.-", retention_rule("Other", default=True)),
        "properties.policyRules",
    ),
    case("retention-rule-without-lifecycles", at(f"{R1}.lifecycles", []), f"{RULE1}.lifecycles"),
    case(
        "empty-backupType",
        at(f"{R0}.backupParameters.backupType", ""),
        f"{RULE0}.backupParameters.backupType",
    ),
    # deleteAfter / copyAfter durations
    *[
        case(
            f"deleteAfter-{value or 'empty'}",
            at(f"{DELETE_AFTER}.duration", value),
            f"{LIFECYCLE}.deleteAfter.duration",
        )
        for value in ["P0D", "1 week", "", "PT-1H", "-P1D", "PT0S", "P1DT", "P2W3D"]
    ],
    case(
        "deleteAfter-P10000Y",
        at(f"{DELETE_AFTER}.duration", "P10000Y"),
        f"{LIFECYCLE}.deleteAfter.duration",
    ),
    case(
        "deleteAfter-huge-hours",
        at(f"{DELETE_AFTER}.duration", "PT99999999999999999999H"),
        f"{LIFECYCLE}.deleteAfter.duration",
    ),
    case(
        "copyAfter-P0D",
        at(
            f"{R1}.lifecycles.0.targetDataStoreCopySettings",
            copy_setting({"objectType": "CustomCopyOption", "duration": "P0D"}),
        ),
        f"{LIFECYCLE}.targetDataStoreCopySettings[0].copyAfter.duration",
    ),
    case(
        "copyAfter-not-a-duration",
        at(
            f"{R1}.lifecycles.0.targetDataStoreCopySettings",
            copy_setting({"objectType": "CustomCopyOption", "duration": "7 days"}),
        ),
        f"{LIFECYCLE}.targetDataStoreCopySettings[0].copyAfter.duration",
    ),
    # repeatingTimeIntervals
    *[
        case(f"interval-{id_}", interval(text), f"{INTERVALS}[0]")
        for id_, text in [
            ("no-duration", "R/2021-08-15T06:30:00+00:00"),
            ("no-R", "2021-08-15T06:30:00Z/P1W"),
            ("start-not-a-date", "R/notadate/P1W"),
            ("start-impossible-date", "R/2021-02-30T06:30:00Z/P1D"),
            ("zero-step", "R/2021-08-15T06:30:00Z/P0D"),
            ("negative-step", "R/2021-08-15T06:30:00Z/-P1D"),
            ("R0", "R0/2021-08-15T06:30:00Z/P1D"),
            ("Rx", "Rx/2021-08-15T06:30:00Z/P1D"),
            ("R-1", "R-1/2021-08-15T06:30:00Z/P1D"),
            ("four-parts", "R/2021-08-15T06:30:00Z/P1D/P1D"),
            ("empty", ""),
        ]
    ],
    case("interval-R-superscript-2", interval("R²/2021-08-15T06:30:00Z/P1D"), f"{INTERVALS}[0]"),
    case(
        "second-interval-bad",
        at(
            f"{SCHEDULE}.repeatingTimeIntervals",
            ["R/2021-08-15T06:30:00Z/P1D", "R/2021-08-15T18:30:00Z/1 day"],
        ),
        f"{INTERVALS}[1]",
    ),
    case("no-intervals", at(f"{SCHEDULE}.repeatingTimeIntervals", []), INTERVALS),
    case("empty-timeZone", at(f"{SCHEDULE}.timeZone", ""), f"{TRIGGER}.schedule.timeZone"),
    # a start that exists in UTC but not in the policy's zone (past 9999-12-31 in Tokyo)
    case(
        "interval-off-the-calendar-in-its-zone",
        [interval("R/9999-12-31T23:00:00+00:00/P1D"), at(f"{SCHEDULE}.timeZone", "Tokyo Standard Time")],
        f"{INTERVALS}[0]",
    ),
    # taggingCriteria
    case("no-tagging-criteria", at(f"{R0}.trigger.taggingCriteria", []), TAGGING),
    case("no-default-criterion", at(f"{R0}.trigger.taggingCriteria.0.isDefault", False), TAGGING),
    case("two-default-criteria", weekly_edit(isDefault=True), TAGGING),
    case("tag-without-retention-rule", lambda b: weekly(b, rule=False), f"{TAGGING}[1].tagInfo.tagName"),
    case(
        "default-tag-without-retention-rule",
        at(f"{R0}.trigger.taggingCriteria.0.tagInfo.tagName", "Monthly"),
        f"{TAGGING}[0].tagInfo.tagName",
    ),
    case(
        "tag-naming-a-backup-rule",
        lambda b: weekly(b, rule=False, tagInfo={"tagName": "BackupWeekly"}),
        f"{TAGGING}[1].tagInfo.tagName",
    ),
    case(
        "duplicate-tag-name",
        [
            weekly_edit(),
            lambda b: tagging(b).append({**copy.deepcopy(tagging(b)[1]), "tagInfo": {"tagName": "WEEKLY"}}),
        ],
        f"{TAGGING}[2].tagInfo.tagName",
    ),
    case("negative-taggingPriority", weekly_edit(taggingPriority=-1), f"{TAGGING}[1].taggingPriority"),
    case(
        "taggingPriority-beyond-int64",
        at(f"{R0}.trigger.taggingCriteria.0.taggingPriority", 2**63),
        f"{TAGGING}[0].taggingPriority",
        code=SCHEMA,
    ),
    *[
        case(f"daysOfMonth-{id_}", day_of_month(day), f"{WEEKLY_CRITERIA}.daysOfMonth[1].date")
        for id_, day in [
            ("date-0", {"date": 0}),
            ("date-29", {"date": 29}),
            ("date-31", {"date": 31}),
            ("date-negative", {"date": -1}),
            ("date-29-isLast-false", {"date": 29, "isLast": False}),
            ("neither-date-nor-isLast", {}),
        ]
    ],
    *[
        case(f"scheduleTimes-{id_}", schedule_time(value), f"{WEEKLY_CRITERIA}.scheduleTimes[1]")
        for id_, value in [
            ("not-a-date", "notadate"),
            ("empty", ""),
            ("date-only", "2019-03-01"),
            ("time-only", "13:00:00"),
            ("month-13", "2019-13-01T13:00:00Z"),
        ]
    ],
    case("scheduleTimes-number", schedule_time(1300), f"{WEEKLY_CRITERIA}.scheduleTimes[1]", code=SCHEMA),
    case(
        "adhoc-tag-without-retention-rule",
        at(f"{P}.policyRules.-", adhoc_rule("Monthly")),
        "properties.policyRules[2].trigger.taggingCriteria.tagInfo.tagName",
    ),
    # unknown objectType values (the discriminators) and missing ones
    case("policy-objectType", at(f"{P}.objectType", "FancyPolicy"), "properties.objectType", code=SCHEMA),
    case("policy-no-objectType", at(f"{P}.objectType", DROP), "properties.objectType", code=SCHEMA),
    case("rule-objectType", at(f"{R0}.objectType", "AzureFooRule"), f"{RULE0}.objectType", code=SCHEMA),
    case(
        "retention-rule-objectType",
        at(f"{R1}.objectType", "AzureArchiveRule"),
        f"{RULE1}.objectType",
        code=SCHEMA,
    ),
    case("rule-no-objectType", at(f"{R1}.objectType", DROP), f"{RULE1}.objectType", code=SCHEMA),
    case("rule-objectType-number", at(f"{R0}.objectType", 7), f"{RULE0}.objectType", code=SCHEMA),
    case(
        "trigger-objectType",
        at(f"{R0}.trigger.objectType", "CronTriggerContext"),
        f"{TRIGGER}.objectType",
        code=SCHEMA,
    ),
    case(
        "deleteAfter-objectType",
        at(f"{DELETE_AFTER}.objectType", "RelativeDeleteOption"),
        f"{LIFECYCLE}.deleteAfter.objectType",
        code=SCHEMA,
    ),
    case(
        "copyAfter-objectType",
        at(f"{R1}.lifecycles.0.targetDataStoreCopySettings", copy_setting({"objectType": "LaterCopyOption"})),
        f"{LIFECYCLE}.targetDataStoreCopySettings[0].copyAfter.objectType",
        code=SCHEMA,
    ),
    case(
        "backupParameters-objectType",
        at(f"{R0}.backupParameters.objectType", "AzureFooParams"),
        f"{RULE0}.backupParameters.objectType",
        code=SCHEMA,
    ),
    case(
        "criteria-objectType",
        weekly_edit(criteria=[{"objectType": "CronBackupCriteria"}]),
        f"{WEEKLY_CRITERIA}.objectType",
        code=SCHEMA,
    ),
    # enum values
    case(
        "daysOfTheWeek",
        weekly_edit(criteria=criteria(daysOfTheWeek=["Sunday", "Funday"])),
        f"{WEEKLY_CRITERIA}.daysOfTheWeek[1]",
        code=SCHEMA,
    ),
    case(
        "daysOfTheWeek-number",
        weekly_edit(criteria=criteria(daysOfTheWeek=[0])),
        f"{WEEKLY_CRITERIA}.daysOfTheWeek[0]",
        code=SCHEMA,
    ),
    case(
        "absoluteCriteria",
        weekly_edit(criteria=criteria(absoluteCriteria=["FirstOfDecade"])),
        f"{WEEKLY_CRITERIA}.absoluteCriteria[0]",
        code=SCHEMA,
    ),
    case(
        "weeksOfTheMonth",
        weekly_edit(criteria=criteria(weeksOfTheMonth=["Fifth"])),
        f"{WEEKLY_CRITERIA}.weeksOfTheMonth[0]",
        code=SCHEMA,
    ),
    case(
        "monthsOfYear",
        weekly_edit(criteria=criteria(monthsOfYear=["Smarch"])),
        f"{WEEKLY_CRITERIA}.monthsOfYear[0]",
        code=SCHEMA,
    ),
    case(
        "dataStoreType",
        at(f"{R0}.dataStore.dataStoreType", "TapeStore"),
        f"{RULE0}.dataStore.dataStoreType",
        code=SCHEMA,
    ),
    # shapes: types and required properties
    case("no-properties", at("properties", DROP), "properties", code=SCHEMA),
    case("properties-array", at("properties", []), "properties", code=SCHEMA),
    case("policyRules-object", at(f"{P}.policyRules", {}), "properties.policyRules", code=SCHEMA),
    case("rule-string", at(f"{R1}", "Default"), RULE1, code=SCHEMA),
    case(
        "datasourceTypes-string",
        at(f"{P}.datasourceTypes", "OssDB"),
        "properties.datasourceTypes",
        code=SCHEMA,
    ),
    case("no-schedule", at(f"{R0}.trigger.schedule", DROP), f"{TRIGGER}.schedule", code=SCHEMA),
    case("intervals-null", at(f"{SCHEDULE}.repeatingTimeIntervals", None), INTERVALS, code=SCHEMA),
    case("interval-number", at(f"{SCHEDULE}.repeatingTimeIntervals", [1]), f"{INTERVALS}[0]", code=SCHEMA),
    case("no-deleteAfter", at(DELETE_AFTER, DROP), f"{LIFECYCLE}.deleteAfter", code=SCHEMA),
    case(
        "no-duration", at(f"{DELETE_AFTER}.duration", DROP), f"{LIFECYCLE}.deleteAfter.duration", code=SCHEMA
    ),
    case(
        "duration-number", at(f"{DELETE_AFTER}.duration", 7), f"{LIFECYCLE}.deleteAfter.duration", code=SCHEMA
    ),
    case(
        "no-sourceDataStore",
        at(f"{R1}.lifecycles.0.sourceDataStore", DROP),
        f"{LIFECYCLE}.sourceDataStore",
        code=SCHEMA,
    ),
    case(
        "no-tagInfo",
        at(f"{R0}.trigger.taggingCriteria.0.tagInfo", DROP),
        f"{TAGGING}[0].tagInfo",
        code=SCHEMA,
    ),
    case(
        "no-tagName",
        at(f"{R0}.trigger.taggingCriteria.0.tagInfo.tagName", DROP),
        f"{TAGGING}[0].tagInfo.tagName",
        code=SCHEMA,
    ),
    case(
        "taggingPriority-string",
        at(f"{R0}.trigger.taggingCriteria.0.taggingPriority", "99"),
        f"{TAGGING}[0].taggingPriority",
        code=SCHEMA,
    ),
    case(
        "taggingPriority-float",
        at(f"{R0}.trigger.taggingCriteria.0.taggingPriority", 1.5),
        f"{TAGGING}[0].taggingPriority",
        code=SCHEMA,
    ),
    case(
        "isDefault-string",
        at(f"{R0}.trigger.taggingCriteria.0.isDefault", "true"),
        f"{TAGGING}[0].isDefault",
        code=SCHEMA,
    ),
    case("date-string", day_of_month({"date": "5"}), f"{WEEKLY_CRITERIA}.daysOfMonth[1].date", code=SCHEMA),
    case("rule-null", at(f"{R1}", None), RULE1, code=SCHEMA),
]


@pytest.mark.parametrize(("edits", "code", "target"), INVALID)
def test_invalid_policy_is_refused_with_the_json_path(
    shared: Env, request: pytest.FixtureRequest, edits: list[Edit], code: str, target: str
) -> None:
    name = f"invalid-{request.node.callspec.id}"
    r = shared.client.put(policy_url(shared, name), json=build(*edits))
    assert_error(r, code, target)
    assert shared.client.get(policy_url(shared, name)).status_code == 404, "a refused PUT stored the policy"


# -- valid variants -----------------------------------------------------------------------------


def ok(id_: str, *edits: Edit) -> Any:
    return pytest.param(list(edits), id=id_)


VALID = [
    ok("R3-monthly-with-offset", interval("R3/2023-01-31T02:30:00+05:30/P1M")),
    ok("every-4-hours", interval("R/2023-06-01T02:30:00Z/PT4H")),
    ok("spec-style-offset", interval("R/2019-11-20T08:00:00-08:00/P1W")),
    ok("no-offset-start", interval("R/2023-06-01T02:30:00/P1D")),
    ok("yearly", interval("R/2024-02-29T02:30:00Z/P1Y")),
    ok(
        "several-intervals",
        at(
            f"{SCHEDULE}.repeatingTimeIntervals",
            [
                "R/2023-06-01T02:30:00Z/P1D",
                "R/2023-06-01T14:30:00+00:00/P1D",
                "R2/2023-06-03T09:00:00+02:00/P1W",
            ],
        ),
    ),
    ok("no-timeZone", at(f"{SCHEDULE}.timeZone", DROP)),
    ok("windows-timeZone", at(f"{SCHEDULE}.timeZone", "Pacific Standard Time")),
    ok("adhoc-rule", at(f"{P}.policyRules.-", adhoc_rule("Default"))),
    ok("adhoc-rule-without-tag", at(f"{P}.policyRules.-", adhoc_rule(None))),
    ok(
        "custom-copy-with-duration",
        at(
            f"{R1}.lifecycles.0.targetDataStoreCopySettings",
            copy_setting({"objectType": "CustomCopyOption", "duration": "P7D"}),
        ),
    ),
    ok(
        "immediate-copy",
        at(
            f"{R1}.lifecycles.0.targetDataStoreCopySettings",
            copy_setting({"objectType": "ImmediateCopyOption"}),
        ),
    ),
    ok(
        "copy-on-expiry",
        at(
            f"{R1}.lifecycles.0.targetDataStoreCopySettings",
            copy_setting({"objectType": "CopyOnExpiryOption"}),
        ),
    ),
    ok("weekly-tag", weekly_edit()),
    ok("tag-matching-rule-case-insensitively", lambda b: weekly(b, tagInfo={"tagName": "weekly"})),
    ok("taggingPriority-0", at(f"{R0}.trigger.taggingCriteria.0.taggingPriority", 0)),
    ok(
        "all-criteria",
        weekly_edit(
            criteria=criteria(
                absoluteCriteria=["FirstOfMonth", "AllBackup"],
                daysOfMonth=[{"date": 1}, {"date": 28}, {"isLast": True}],
                daysOfTheWeek=["Monday", "Saturday"],
                monthsOfYear=["January", "December"],
                weeksOfTheMonth=["First", "Last"],
                scheduleTimes=["2023-06-01T02:30:00Z", "2023-06-01T14:30:00+05:30"],
            )
        ),
    ),
    ok(
        "durations",
        at(f"{DELETE_AFTER}.duration", "P1Y"),
        at(f"{P}.policyRules.-", retention_rule("Weekly", "PT36H")),
    ),
    ok("no-backupParameters", at(f"{R0}.backupParameters", DROP)),
    ok(
        "several-datasourceTypes",
        at(f"{P}.datasourceTypes", ["OssDB", "Microsoft.DBforPostgreSQL/servers/databases"]),
    ),
]


@pytest.mark.parametrize("edits", VALID)
def test_valid_policy_is_accepted_and_echoed(
    shared: Env, request: pytest.FixtureRequest, edits: list[Edit]
) -> None:
    body = build(*edits)
    name = f"valid-{request.node.callspec.id}"
    r = shared.client.put(policy_url(shared, name), json=body)
    assert r.status_code == 200, r.text
    assert_synchronous(r)
    assert r.json()["properties"] == with_tag_ids(body)
    assert shared.client.get(policy_url(shared, name)).json() == r.json()


def test_nulls_and_unknown_properties_are_ignored(shared: Env) -> None:
    body = build(
        at(f"{SCHEDULE}.timeZone", None),
        at(f"{R0}.backupParameters", None),
        at(f"{R0}.trigger.taggingCriteria.0.criteria", None),
        at(f"{P}.futureProperty", {"x": 1}),
        at(f"{R1}.lifecycles.0.futureSetting", True),
        at("tags", {"k": "v"}),
    )
    r = shared.client.put(policy_url(shared, "nulls"), json=body)
    assert r.status_code == 200, r.text
    expected = with_tag_ids(policy_body())
    del expected["policyRules"][0]["trigger"]["schedule"]["timeZone"]
    del expected["policyRules"][0]["backupParameters"]
    assert r.json()["properties"] == expected
    assert "tags" not in r.json()


# Enum-valued properties: their values match case-insensitively too. DataStoreInfoBase.objectType is a
# plain string in the spec (no enum), so its value is left as sent.
ENUM_KEYS = {
    "objectType",
    "dataStoreType",
    "daysOfTheWeek",
    "absoluteCriteria",
    "monthsOfYear",
    "weeksOfTheMonth",
}


def lower_cased(value: Any, key: str = "") -> Any:
    """``value`` with every property name lower-cased, and enum and objectType values too."""
    if isinstance(value, dict):
        return {k.lower(): lower_cased(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_cased(v, key) for v in value]
    if isinstance(value, str) and key in ENUM_KEYS and value != "DataStoreInfoBase":
        return value.lower()
    return value


def test_lower_cased_names_and_values_are_answered_in_spec_casing(shared: Env) -> None:
    body = build(
        weekly_edit(
            criteria=criteria(
                absoluteCriteria=["FirstOfMonth"],
                daysOfMonth=[{"date": 1}, {"isLast": True}],
                daysOfTheWeek=["Sunday"],
                monthsOfYear=["February"],
                weeksOfTheMonth=["Second"],
                scheduleTimes=["2019-03-01T13:00:00Z"],
            )
        ),
        at(
            f"{R1}.lifecycles.0.targetDataStoreCopySettings",
            copy_setting({"objectType": "CustomCopyOption", "duration": "P7D"}),
        ),
        at(f"{P}.policyRules.-", adhoc_rule("Weekly")),
    )
    sent = lower_cased(body)
    assert "policyrules" in sent["properties"] and sent["properties"]["objecttype"] == "backuppolicy"
    r = shared.client.put(policy_url(shared, "lower-cased"), json=sent)
    assert r.status_code == 200, r.text
    assert r.json()["properties"] == with_tag_ids(body)


def test_policy_with_every_option_survives_a_get_put_round_trip(shared: Env) -> None:
    """A GET body (with read-only tag ids and systemData) can be PUT back unchanged."""
    body = build(weekly_edit(), at(f"{P}.policyRules.-", adhoc_rule("Weekly")))
    first = shared.client.put(policy_url(shared, "round-trip"), json=body)
    assert first.status_code == 200, first.text
    again = shared.client.put(policy_url(shared, "round-trip"), json=first.json())
    assert again.status_code == 200, again.text
    assert again.json()["properties"] == first.json()["properties"]


def test_instances_may_reference_a_replaced_policy(shared: Env) -> None:
    """Replacing a policy in use is allowed (PUT is a replace, not a delete)."""
    name = "in-use-replace"
    assert shared.client.put(policy_url(shared, name), json=policy_body()).status_code == 200
    policy_id = f"{shared.vault_path}/backupPolicies/{name}"
    shared.create_instance("bi-replace", instance_body(policy_id, database="replacedb"))
    r = shared.client.put(policy_url(shared, name), json=build(at(f"{DELETE_AFTER}.duration", "P1M")))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == policy_id
    got = shared.client.get(policy_url(shared, name)).json()
    assert got["properties"]["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] == "P1M"
