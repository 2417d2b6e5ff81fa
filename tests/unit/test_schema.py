"""arm/schema.py: request bodies decoded the way the real service reads them, into the real spec Structs.

Property names and enum values match case-insensitively and come out in the spec's spelling; ``null``
means absent; unknown properties are ignored; an unknown ``objectType`` names the JSON path and the
values expected; every failure, whatever the bytes, is an ArmError 400 whose ``target`` is the JSON
path (``$`` for the whole body), never another exception.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpvault.arm.schema import convert, decode, decode_json
from dpvault.errors import ArmError
from dpvault.model.instances.schema import (
    BackupInstanceResource,
    Datasource,
    KubernetesClusterBackupDatasourceParameters,
    PolicyParameters,
)
from dpvault.model.policies.schema import (
    AbsoluteDeleteOption,
    AzureBackupRule,
    AzureRetentionRule,
    BaseBackupPolicyResource,
    CustomCopyOption,
    ScheduleBasedBackupCriteria,
    TaggingCriteria,
)
from dpvault.model.schema import InnerError, UserFacingError
from dpvault.model.vaults.schema import (
    BackupVault,
    BackupVaultResource,
    PatchResourceRequestInput,
    StorageSetting,
)
from tests.support import instance_body, policy_body

POLICY_ID = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v/backupPolicies/p"
)


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def refused(body: Any, tp: type, *, code: str = "InvalidRequestContent") -> ArmError:
    """Decoding ``body`` (bytes, or a value to serialise) fails with a 400 ArmError of ``code``."""
    data = body if isinstance(body, bytes) else raw(body)
    with pytest.raises(ArmError) as caught:
        decode(data, tp)
    error = caught.value
    assert (error.status, error.code) == (400, code), error.body()
    assert error.message
    return error


# -- property names -----------------------------------------------------------------------------


def test_property_names_match_case_insensitively() -> None:
    got = decode(raw({"resourceId": "/x", "RESOURCENAME": "db", "datasourcetype": "OssDB"}), Datasource)
    assert got == Datasource(resourceID="/x", resourceName="db", datasourceType="OssDB")
    assert msgspec.json.decode(msgspec.json.encode(got)) == {
        "resourceID": "/x",
        "resourceName": "db",
        "datasourceType": "OssDB",
    }


def test_a_whole_instance_body_with_odd_casing() -> None:
    body = instance_body(POLICY_ID)
    props = body["properties"]
    props["DataSourceInfo"] = props.pop("dataSourceInfo")
    props["DataSourceInfo"]["resourceId"] = props["DataSourceInfo"].pop("resourceID")
    props["POLICYINFO"] = props.pop("policyInfo")
    body["Properties"] = body.pop("properties")
    got = decode(raw(body), BackupInstanceResource)
    assert got.properties.dataSourceInfo.resourceID.endswith("/databases/testdb")
    assert got.properties.policyInfo.policyId == POLICY_ID
    assert got.tags == {"key1": "val1"}


# -- null ---------------------------------------------------------------------------------------


def test_null_is_absent() -> None:
    got = decode(raw({"resourceID": "/x", "resourceName": None, "objectType": None}), Datasource)
    assert got == Datasource(resourceID="/x")
    vault = decode(
        raw({"location": "westus", "tags": None, "identity": None, "properties": {"storageSettings": []}}),
        BackupVaultResource,
    )
    assert vault.tags is None and vault.identity is None


def test_null_for_a_required_property_is_missing() -> None:
    error = refused({"resourceID": None}, Datasource)
    assert error.target == "resourceID"
    assert "'resourceID' is required" in error.message


def test_null_for_a_required_tag_is_missing_and_lists_the_expected_values() -> None:
    error = refused({"objectType": None, "name": "r", "lifecycles": []}, AzureRetentionRule)
    assert error.target == "objectType"
    assert "required" in error.message and "AzureRetentionRule" in error.message


def test_null_list_items_are_type_errors() -> None:
    error = refused(
        {"properties": {"objectType": "BackupPolicy", "datasourceTypes": ["x", None], "policyRules": []}},
        BaseBackupPolicyResource,
    )
    assert error.target == "properties.datasourceTypes[1]"


# -- enum values --------------------------------------------------------------------------------


def test_enum_values_are_canonicalised() -> None:
    got = decode(raw({"datastoretype": "vaultSTORE", "Type": "locallyredundant"}), StorageSetting)
    assert got == StorageSetting(datastoreType="VaultStore", type="LocallyRedundant")


def test_enum_values_in_lists_are_canonicalised() -> None:
    got = decode(
        raw(
            {
                "objecttype": "schedulebasedbackupcriteria",
                "daysOfTheWeek": ["sunday", "MONDAY"],
                "absolutecriteria": ["firstOFmonth"],
                "monthsofyear": ["FEBRUARY"],
                "weeksOfTheMonth": ["last"],
                "daysOfMonth": [{"DATE": 3}, {"islast": True}],
            }
        ),
        ScheduleBasedBackupCriteria,
    )
    assert got.daysOfTheWeek == ["Sunday", "Monday"]
    assert got.absoluteCriteria == ["FirstOfMonth"]
    assert got.monthsOfYear == ["February"]
    assert got.weeksOfTheMonth == ["Last"]
    assert [(d.date, d.isLast) for d in got.daysOfMonth or []] == [(3, None), (None, True)]


def test_an_unknown_enum_value_names_the_path_and_the_values() -> None:
    error = refused({"storageSettings": [{"type": "LocallyRedundant"}, {"type": "Cloudy"}]}, BackupVault)
    assert error.target == "storageSettings[1].type"
    assert "'Cloudy'" in error.message
    assert "GeoRedundant, LocallyRedundant, ZoneRedundant" in error.message


def test_an_enum_value_of_the_wrong_type_is_a_type_error() -> None:
    error = refused({"type": 5}, StorageSetting)
    assert error.target == "type"


# -- tagged unions (objectType) -----------------------------------------------------------------


def test_tag_values_are_canonicalised_and_select_the_class() -> None:
    body = policy_body()
    body["properties"]["objectType"] = "backuppolicy"
    body["properties"]["policyRules"][0]["objectType"] = "AZUREBACKUPRULE"
    body["properties"]["policyRules"][0]["trigger"]["OBJECTTYPE"] = (
        body["properties"]["policyRules"][0]["trigger"].pop("objectType").lower()
    )
    body["properties"]["policyRules"][1]["objecttype"] = body["properties"]["policyRules"][1].pop(
        "objectType"
    )
    got = decode(raw(body), BaseBackupPolicyResource)
    backup, retention = got.properties.policyRules
    assert isinstance(backup, AzureBackupRule) and isinstance(retention, AzureRetentionRule)
    assert type(backup.trigger).__name__ == "ScheduleBasedTriggerContext"
    encoded = msgspec.json.decode(msgspec.json.encode(got))
    assert encoded["properties"]["objectType"] == "BackupPolicy"
    assert [r["objectType"] for r in encoded["properties"]["policyRules"]] == [
        "AzureBackupRule",
        "AzureRetentionRule",
    ]
    assert "objecttype" not in encoded["properties"]["policyRules"][1]


def test_an_unknown_tag_value_names_the_path_and_the_expected_values() -> None:
    body = policy_body()
    body["properties"]["policyRules"][1]["objectType"] = "AzureArchiveRule"
    error = refused(body, BaseBackupPolicyResource)
    assert error.target == "properties.policyRules[1].objectType"
    assert '"AzureArchiveRule"' in error.message
    assert "expected one of: AzureBackupRule, AzureRetentionRule" in error.message


@pytest.mark.parametrize("value", [5, True, ["AzureRetentionRule"], {"x": 1}])
def test_a_tag_value_that_is_not_a_string(value: Any) -> None:
    body = policy_body()
    body["properties"]["policyRules"][1]["objectType"] = value
    error = refused(body, BaseBackupPolicyResource)
    assert error.target == "properties.policyRules[1].objectType"
    assert "AzureBackupRule, AzureRetentionRule" in error.message


def test_a_missing_tag_field() -> None:
    body = policy_body()
    del body["properties"]["policyRules"][0]["trigger"]["objectType"]
    error = refused(body, BaseBackupPolicyResource)
    assert error.target == "properties.policyRules[0].trigger.objectType"
    assert "required" in error.message
    assert "AdhocBasedTriggerContext, ScheduleBasedTriggerContext" in error.message


def test_a_single_tagged_struct_checks_its_tag() -> None:
    assert (
        decode(b'{"objectType": "absolutedeleteoption", "duration": "P1D"}', AbsoluteDeleteOption).duration
        == "P1D"
    )
    error = refused({"objectType": "RelativeDeleteOption", "duration": "P1D"}, AbsoluteDeleteOption)
    assert error.target == "objectType"
    assert "AbsoluteDeleteOption" in error.message


def test_a_tag_of_the_wrong_member_of_a_single_tag_union() -> None:
    error = refused({"objectType": "AzureBackupRule", "name": "x", "lifecycles": []}, AzureRetentionRule)
    assert error.target == "objectType"


# -- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "target"),
    [
        (lambda p: p["policyRules"][1]["lifecycles"][0]["deleteAfter"].update(duration=7),
         "properties.policyRules[1].lifecycles[0].deleteAfter.duration"),
        (lambda p: p["policyRules"][1]["lifecycles"][0].pop("sourceDataStore"),
         "properties.policyRules[1].lifecycles[0].sourceDataStore"),
        (lambda p: p["policyRules"][1]["lifecycles"][0]["sourceDataStore"].update(dataStoreType="Tape"),
         "properties.policyRules[1].lifecycles[0].sourceDataStore.dataStoreType"),
        (lambda p: p["policyRules"][0]["trigger"]["taggingCriteria"][0].update(taggingPriority="1"),
         "properties.policyRules[0].trigger.taggingCriteria[0].taggingPriority"),
        (lambda p: p["policyRules"][0]["trigger"]["taggingCriteria"][0].update(taggingPriority=True),
         "properties.policyRules[0].trigger.taggingCriteria[0].taggingPriority"),
        (lambda p: p["policyRules"][0]["trigger"]["taggingCriteria"][0].update(taggingPriority=1.5),
         "properties.policyRules[0].trigger.taggingCriteria[0].taggingPriority"),
        (lambda p: p["policyRules"][0]["trigger"]["taggingCriteria"][0].update(isDefault="yes"),
         "properties.policyRules[0].trigger.taggingCriteria[0].isDefault"),
        (lambda p: p["policyRules"][0]["trigger"]["taggingCriteria"][0]["tagInfo"].pop("tagName"),
         "properties.policyRules[0].trigger.taggingCriteria[0].tagInfo.tagName"),
        (lambda p: p["policyRules"][0]["trigger"]["schedule"].update(repeatingTimeIntervals="R/x/P1D"),
         "properties.policyRules[0].trigger.schedule.repeatingTimeIntervals"),
        (lambda p: p["policyRules"][0]["trigger"]["schedule"].update(repeatingTimeIntervals=["R/x/P1D", 2]),
         "properties.policyRules[0].trigger.schedule.repeatingTimeIntervals[1]"),
        (lambda p: p["policyRules"][0].update(dataStore="VaultStore"), "properties.policyRules[0].dataStore"),
        (lambda p: p["policyRules"].append([]), "properties.policyRules[2]"),
        (lambda p: p.update(datasourceTypes={"a": 1}), "properties.datasourceTypes"),
        (lambda p: p.pop("policyRules"), "properties.policyRules"),
    ],
)  # fmt: skip
def test_wrong_types_and_missing_properties_name_the_json_path(edit: Any, target: str) -> None:
    body = policy_body()
    edit(body["properties"])
    error = refused(body, BaseBackupPolicyResource)
    assert error.target == target
    assert f"'{target}'" in error.message


def test_missing_required_property_message() -> None:
    error = refused({"properties": {"storageSettings": []}}, BackupVaultResource)
    assert error.target == "location"
    assert error.message == "The property 'location' is required."


@pytest.mark.parametrize("body", [b"null", b"[]", b"[{}]", b'"text"', b"5", b"true"])
def test_a_body_that_is_not_an_object_targets_the_root(body: bytes) -> None:
    error = refused(body, BaseBackupPolicyResource)
    assert error.target == "$"


def test_the_root_object_of_the_wrong_shape() -> None:
    assert refused({}, BaseBackupPolicyResource).target == "properties"
    assert refused({"properties": []}, BaseBackupPolicyResource).target == "properties"


# -- unknown properties -------------------------------------------------------------------------


def test_unknown_properties_are_ignored_at_every_level() -> None:
    body = policy_body()
    body["newTopLevel"] = {"a": [1, 2, None]}
    body["properties"]["futureSetting"] = None
    body["properties"]["policyRules"][1]["lifecycles"][0]["extra"] = [{"objectType": "Whatever"}]
    body["properties"]["policyRules"][0]["trigger"]["schedule"]["rpo"] = 5
    got = decode(raw(body), BaseBackupPolicyResource)
    assert msgspec.json.decode(msgspec.json.encode(got)) == policy_body()


def test_unknown_properties_of_a_polymorphic_object_are_ignored() -> None:
    got = decode(b'{"objectType": "CustomCopyOption", "duration": "P1D", "unit": "days"}', CustomCopyOption)
    assert got == CustomCopyOption(duration="P1D")


# -- maps of strings (tags) ---------------------------------------------------------------------


def test_string_maps_keep_their_keys_as_sent() -> None:
    got = decode(b'{"tags": {"Env": "Prod", "env": "dev", "COST-center": "42"}}', PatchResourceRequestInput)
    assert got.tags == {"Env": "Prod", "env": "dev", "COST-center": "42"}


@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": "b"}])
def test_each_string_map_value_must_be_a_string(value: Any) -> None:
    error = refused({"tags": {"ok": "v", "Bad Key": value}}, PatchResourceRequestInput)
    assert error.target == "tags.Bad Key"
    assert "'tags.Bad Key' must be a string" in error.message


def test_a_string_map_that_is_not_an_object() -> None:
    assert refused({"tags": ["k"]}, PatchResourceRequestInput).target == "tags"
    body = instance_body(POLICY_ID, tags={"k": "v"})
    body["tags"]["n"] = 5  # type: ignore[assignment]
    assert refused(body, BackupInstanceResource).target == "tags.n"


# -- recursive types ----------------------------------------------------------------------------


def nested_details(depth: int, leaf: str = '{"code": "leaf"}') -> bytes:
    return b'{"details": [' * depth + leaf.encode() + b"]}" * depth


def test_recursive_types_decode() -> None:
    got = decode(
        raw(
            {
                "Code": "outer",
                "DETAILS": [{"code": "a"}, {"details": [{"CODE": "inner", "isretryable": True}]}],
            }
        ),
        UserFacingError,
    )
    assert got.code == "outer"
    assert got.details is not None and got.details[1].details is not None
    assert got.details[1].details[0] == UserFacingError(code="inner", isRetryable=True)
    deep = decode(nested_details(50), UserFacingError)
    for _ in range(50):
        assert deep.details is not None
        deep = deep.details[0]
    assert deep == UserFacingError(code="leaf")


def test_recursive_types_report_deep_paths() -> None:
    error = refused({"details": [{"code": "a"}, {"details": [{"isRetryable": "no"}]}]}, UserFacingError)
    assert error.target == "details[1].details[0].isRetryable"
    error = refused(
        {"innerError": {"EmbeddedInnerError": {"embeddedinnererror": {"additionalInfo": {"k": 1}}}}},
        UserFacingError,
    )
    assert error.target == "innerError.embeddedInnerError.embeddedInnerError.additionalInfo.k"


def test_recursive_types_inside_a_resource() -> None:
    body = instance_body(POLICY_ID)
    body["properties"]["protectionErrorDetails"] = {"code": "E1", "details": [{"details": [{"code": 1}]}]}
    error = refused(body, BackupInstanceResource)
    assert error.target == "properties.protectionErrorDetails.details[0].details[0].code"
    assert decode(
        raw({"additionalInfo": {"a": "b"}, "embeddedInnerError": {"code": "c"}}), InnerError
    ) == InnerError(additionalInfo={"a": "b"}, embeddedInnerError=InnerError(code="c"))


# -- bytes that are not a valid JSON document ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b'{"code": "x"',
        b'{"code": "x",}',
        b"{'code': 'x'}",
        b'{"code": "x"} {"code": "y"}',
        b'{"code": NaN}',
        b'{"code": Infinity}',
        b'{"code": "\\ud800"}',
        b'{"code": "\\x"}',
        b'{"code": "\xff"}',
        b'{"code": "\xc3"}',
        b'{"code": "\xed\xa0\x80"}',
        b"\x00",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        nested_details(100_000),
    ],
    ids=lambda b: repr(b[:24]),
)
def test_malformed_json_is_a_400(body: bytes) -> None:
    for tp in (UserFacingError, BaseBackupPolicyResource):
        error = refused(body, tp)
        assert "could not be deserialized" in error.message
    with pytest.raises(ArmError):
        decode_json(body)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"9" * 5000])
def test_numbers_out_of_range_are_a_400(number: bytes) -> None:
    body = b'{"isDefault": true, "tagInfo": {"tagName": "x"}, "taggingPriority": ' + number + b"}"
    refused(body, TaggingCriteria)


def test_deep_nesting_says_so() -> None:
    error = refused(b"[" * 100_000 + b"]" * 100_000, UserFacingError)
    assert "nested too deeply" in error.message


def test_invalid_utf8_says_so() -> None:
    assert "UTF-8" in refused(b'{"code": "\xff"}', UserFacingError).message


@pytest.mark.parametrize("depth", [450])
def test_deep_recursive_structs_are_a_400_not_a_recursion_error(depth: int) -> None:
    body = nested_details(depth)
    decode_json(body)  # the JSON parser accepts this depth: the failure must come from the decoder itself
    try:
        decode(body, UserFacingError)
    except ArmError as error:
        assert error.status == 400
        return
    # Accepting it is fine too, as long as nothing but ArmError escapes.


def test_convert_refuses_a_non_object_value() -> None:
    with pytest.raises(ArmError) as caught:
        convert([1], UserFacingError)
    assert (caught.value.status, caught.value.target) == (400, "$")


# -- never anything but ArmError ----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

POLICY_KEYS = [
    "objectType",
    "policyRules",
    "datasourceTypes",
    "trigger",
    "schedule",
    "taggingCriteria",
    "lifecycles",
    "deleteAfter",
    "duration",
    "tagInfo",
    "tagName",
    "isDefault",
    "dataStoreType",
]
TAGS = [
    "BackupPolicy",
    "AzureBackupRule",
    "AzureRetentionRule",
    "ScheduleBasedTriggerContext",
    "AdhocBasedTriggerContext",
    "AbsoluteDeleteOption",
    "CustomCopyOption",
    "azureretentionrule",
]


def mutate(base: Any, data: st.DataObject) -> Any:
    """``base`` with random subtrees replaced, keys re-cased and tag values swapped."""
    if isinstance(base, dict):
        out = {}
        for k, v in base.items():
            choice = data.draw(st.integers(0, 9))
            if choice == 0:
                continue
            key = k.upper() if choice == 1 else k
            out[key] = data.draw(json_values) if choice == 2 else mutate(v, data)
            if choice == 3:
                out[data.draw(st.sampled_from(POLICY_KEYS))] = data.draw(st.sampled_from(TAGS) | json_values)
        return out
    if isinstance(base, list):
        items = [mutate(v, data) for v in base]
        if data.draw(st.integers(0, 5)) == 0:
            items.append(data.draw(json_values))
        return items
    return data.draw(json_values) if data.draw(st.integers(0, 4)) == 0 else base


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_policies_decode_or_raise_arm_error(data: st.DataObject) -> None:
    body = raw(mutate(policy_body(), data))
    try:
        decode(body, BaseBackupPolicyResource)
    except ArmError as error:
        assert error.status == 400
        assert error.target is None or isinstance(error.target, str)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_decodes_or_raises_arm_error(value: Any) -> None:
    for tp in (
        BaseBackupPolicyResource,
        BackupInstanceResource,
        PolicyParameters,
        TaggingCriteria,
        KubernetesClusterBackupDatasourceParameters,
    ):
        try:
            decode(raw(value), tp)
        except ArmError as error:
            assert error.status == 400
