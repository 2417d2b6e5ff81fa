"""Bad input, class by class: each gets its ARM status and CloudError code (and ``target`` where the
server names the JSON path), the body is ``{"error": {"code", "message", ...}}`` as
``application/json; charset=utf-8``, and nothing answers 500 (arm-contract.md sections 1, 2, 6, 7).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import (
    API,
    SUB,
    Env,
    Server,
    instance_body,
    policy_body,
    rg_path,
    vault_body,
    vault_path,
    wait_operation,
)

POSTGRES = os.environ.get("DPVAULT_TEST_DATABASE", "sqlite").lower() == "postgresql"
JSON = {"Content-Type": "application/json"}
ANY = object()  # "do not check the target"
DROP = object()  # "remove this property"


def assert_error(r: httpx.Response, status: int, code: str, target: Any = ANY) -> dict[str, Any]:
    """The response is the given CloudError; returns ``error``."""
    assert r.status_code < 500, f"server error for bad input: {r.status_code} {r.text}"
    assert (r.status_code, r.headers.get("content-type")) == (status, "application/json; charset=utf-8"), (
        r.text
    )
    body = r.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str) and error["message"]
    assert error["code"] == code, error
    if target is not ANY:
        assert error.get("target") == target, error
    return error


def edited(body: dict[str, Any], *edits: tuple[str, Any]) -> dict[str, Any]:
    """``body`` with each dotted path (list items by index) set to a value, or removed with DROP."""
    for path, value in edits:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return body


@pytest.fixture(scope="module")
def shared(client: httpx.Client) -> Env:
    """One vault with a policy for the requests that are refused (and so change nothing)."""
    return Env(client).create()


class TestApiVersion:
    """ARM-10..13: api-version is required; unknown versions get the provider's or ARM's code."""

    def test_missing_on_a_data_protection_route(self, shared: Env) -> None:
        r = shared.client.get(shared.instance_path("bi"))
        assert_error(r, 400, "MissingApiVersionParameter")

    def test_missing_on_a_resource_group_route(self, shared: Env) -> None:
        assert_error(shared.client.get(rg_path(shared.rg)), 400, "MissingApiVersionParameter")

    def test_unknown_on_a_data_protection_route_lists_the_supported_versions(self, shared: Env) -> None:
        r = shared.client.get(f"{shared.instance_path('bi')}?api-version=2099-01-01")
        message = assert_error(r, 400, "NoRegisteredProviderFound")["message"]
        assert "'2099-01-01'" in message and "backupVaults/backupInstances" in message
        assert "2023-01-01" in message and "2026-06-01" in message

    def test_unknown_on_resource_groups(self, shared: Env) -> None:
        r = shared.client.get(f"{rg_path(shared.rg)}?api-version=2099-01-01")
        assert "'2099-01-01'" in assert_error(r, 400, "InvalidApiVersionParameter")["message"]

    def test_a_newer_accepted_version_works_and_is_repeated_in_polling_urls(self, shared: Env) -> None:
        r = shared.put_instance("newer-api", api="2026-06-01")
        assert r.status_code == 201, r.text
        assert r.headers["Azure-AsyncOperation"].endswith("?api-version=2026-06-01")
        assert wait_operation(shared.client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"


MALFORMED_SUBSCRIPTIONS = [
    "not-a-guid",
    "1234",
    "04cf684ad41f45509f707708a3a2283b",  # no hyphens
    "{04cf684a-d41f-4550-9f70-7708a3a2283b}",
    pytest.param("04cf684ad41f-4550-9f70-7708a3a2-283b", id="misplaced-hyphens"),
    pytest.param("04cf684a-d41f-4550-9f70-7708a3a2_83b", id="underscore"),
    pytest.param("+4cf684a-d41f-4550-9f70-7708a3a2283b", id="leading-plus"),
]


class TestSubscriptionId:
    """ARM-6: subscriptionId is a GUID in its 8-4-4-4-12 form; anything else is 400 InvalidSubscriptionId."""

    @pytest.mark.parametrize("sub", MALFORMED_SUBSCRIPTIONS)
    def test_provider_route(self, client: httpx.Client, sub: str) -> None:
        r = client.get(
            f"/subscriptions/{sub}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        )
        assert_error(r, 400, "InvalidSubscriptionId")

    @pytest.mark.parametrize("sub", MALFORMED_SUBSCRIPTIONS)
    def test_resource_group_route(self, client: httpx.Client, sub: str) -> None:
        assert_error(
            client.get(f"{rg_path('rg1', sub)}?api-version=2021-04-01"), 400, "InvalidSubscriptionId"
        )


BAD_GROUP_NAMES = ["r" * 91, "rg.", "rg%21", "rg%20x", "rg%24", "rg%0D%0A", "rg%2Fx", "rg%3Cx"]
BAD_RESOURCE_NAMES = [
    *("a%0D%0Ab", "a%0Ab", "a%00b", "a%09b"),  # control characters
    *("a%3Cb", "a%3Eb", "a%25b", "a%26b", "a%3Ab", "a%5Cb", "a%3Fb", "a%2Ab", "a%2Fb"),  # < > % & : \ ? * /
    *("n" * 261, "bi.", "%20bi"),  # too long, trailing '.', leading space
]


def assert_no_crlf_in_headers(r: httpx.Response) -> None:
    for name, value in r.headers.raw:
        assert b"\r" not in value and b"\n" not in value, (name, value)


class TestNames:
    """ARM-6: resource group and resource names, sent percent-encoded in the path, are checked first."""

    @pytest.mark.parametrize("rg", BAD_GROUP_NAMES, ids=lambda n: n[:12])
    def test_bad_resource_group_name_on_a_provider_route(self, client: httpx.Client, rg: str) -> None:
        r = client.get(
            f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        )
        assert_error(r, 400, "InvalidResourceGroupName")
        assert_no_crlf_in_headers(r)

    @pytest.mark.parametrize("rg", BAD_GROUP_NAMES, ids=lambda n: n[:12])
    def test_bad_resource_group_name_on_the_resource_group_route(self, client: httpx.Client, rg: str) -> None:
        r = client.put(
            f"/subscriptions/{SUB}/resourceGroups/{rg}?api-version=2021-04-01", json={"location": "westus"}
        )
        assert_error(r, 400, "InvalidResourceGroupName")
        assert_no_crlf_in_headers(r)

    @pytest.mark.parametrize("name", BAD_RESOURCE_NAMES, ids=lambda n: n[:12])
    def test_bad_instance_name(self, shared: Env, name: str) -> None:
        r = shared.client.put(
            f"{shared.vault_path}/backupInstances/{name}?api-version={API}",
            json=instance_body(shared.policy_id),
        )
        assert_error(r, 400, "InvalidResourceName")
        assert_no_crlf_in_headers(r)

    @pytest.mark.parametrize("name", BAD_RESOURCE_NAMES, ids=lambda n: n[:12])
    def test_bad_vault_name(self, client: httpx.Client, name: str) -> None:
        r = client.put(f"{vault_path('rg-names', name)}?api-version={API}", json=vault_body())
        assert_error(r, 400, "InvalidResourceName")
        assert_no_crlf_in_headers(r)

    def test_path_that_is_not_utf8_is_a_400(self, shared: Env) -> None:
        r = shared.client.get(f"{shared.vault_path}/backupInstances/a%FFb?api-version={API}")
        assert_error(r, 400, "InvalidRequestUri")

    def test_longest_legal_names_are_accepted(self, client: httpx.Client) -> None:
        name = "\u0130" * 260  # 'İ': 260 characters, but 520 once lower-cased into the key
        env = Env(client, rg="g" * 90, vault=name).create()
        r = env.put_instance(name)
        assert r.status_code == 201, r.text
        assert r.json()["name"] == name


def _dsp(field: str) -> str:
    return f"properties.policyInfo.policyParameters.dataStoreParametersList.0.{field}"


_BDP = "properties.policyInfo.policyParameters.backupDatasourceParametersList"
_CREDS = "properties.datasourceAuthCredentials"
_TARGET_DSP = "properties.policyInfo.policyParameters.dataStoreParametersList[0]"


def case(
    id_: str, path: str, value: Any, target: str, code: str = "InvalidRequestContent", bug: str = ""
) -> Any:
    """One edit of the valid body and the error it must get; ``bug`` marks a known server bug."""
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(path, value, code, target, id=id_, marks=marks)


BODY_CASES = [
    case("no-properties", "properties", DROP, "properties"),
    case("null-properties", "properties", None, "properties"),
    case("properties-array", "properties", [], "properties"),
    case("no-dataSourceInfo", "properties.dataSourceInfo", DROP, "properties.dataSourceInfo"),
    case("no-policyId", "properties.policyInfo.policyId", DROP, "properties.policyInfo.policyId"),
    case("no-objectType", "properties.objectType", DROP, "properties.objectType"),
    case("no-resourceID", "properties.dataSourceInfo.resourceID", DROP, "properties.dataSourceInfo.resourceID"),
    case("blank-resourceID", "properties.dataSourceInfo.resourceID", " ", "properties.dataSourceInfo.resourceID"),
    case("no-datasourceType", "properties.dataSourceInfo.datasourceType", DROP,
         "properties.dataSourceInfo.datasourceType"),
    case("friendlyName-number", "properties.friendlyName", 5, "properties.friendlyName"),
    case("tags-array", "tags", ["k"], "tags"),
    case("tag-value-number", "tags", {"k": 1}, "tags.k"),
    case("objectType-number", "properties.objectType", 5, "properties.objectType"),
    case("objectType-not-BackupInstance", "properties.objectType", "Foo", "properties.objectType"),
    case("creds-objectType", f"{_CREDS}.objectType", "Nope", f"{_CREDS}.objectType"),
    case("creds-no-objectType", f"{_CREDS}.objectType", DROP, f"{_CREDS}.objectType"),
    case("store-params-objectType", _dsp("objectType"), "Nope", f"{_TARGET_DSP}.objectType"),
    case("ds-params-objectType", _BDP, [{"objectType": "Nope"}], f"{_BDP}[0].objectType"),
    case("ds-params-objectType-number", _BDP, [{"objectType": 5}], f"{_BDP}[0].objectType"),
    case("validationType", "properties.validationType", "Bogus", "properties.validationType"),
    case("dataStoreType", _dsp("dataStoreType"), "Bogus", f"{_TARGET_DSP}.dataStoreType"),
    case("secretStoreType", f"{_CREDS}.secretStoreResource.secretStoreType", "Bogus",
         f"{_CREDS}.secretStoreResource.secretStoreType"),
    case("keyvault-without-uri", f"{_CREDS}.secretStoreResource.uri", DROP, f"{_CREDS}.secretStoreResource.uri"),
    case("51-tags", "tags", {f"k{i}": "v" for i in range(51)}, "tags", code="InvalidTag"),
    case("tag-key-with-lt", "tags", {"a<b": "v"}, "tags.a<b", code="InvalidTagNameCharacters"),
    case("tag-value-over-256", "tags", {"k": "v" * 257}, "tags.k", code="InvalidTag"),
]  # fmt: skip


def _raw_cases() -> list[Any]:
    valid = json.dumps(instance_body("/x")).encode()
    return [
        pytest.param(b'{"properties":', JSON, 400, "InvalidRequestContent", id="malformed-json"),
        pytest.param(b"[]", JSON, 400, "InvalidRequestContent", id="json-array"),
        pytest.param(b'"text"', JSON, 400, "InvalidRequestContent", id="json-string"),
        pytest.param(b"", JSON, 400, "InvalidRequestContent", id="empty"),
        pytest.param(b"  \n", JSON, 400, "InvalidRequestContent", id="blank"),
        pytest.param(valid, {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType", id="text-plain"),
        pytest.param(valid, {"Content-Type": ""}, 415, "UnsupportedMediaType", id="no-content-type"),
        pytest.param(
            b"{" + b" " * (4 * 1024 * 1024) + b"}", JSON, 413, "RequestContentTooLarge", id="over-4mb"
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, JSON, 400, "InvalidRequestContent", id="deep"),
        pytest.param(b'{"tags":{"k":"\xff"}}', JSON, 400, "InvalidRequestContent", id="not-utf8"),
    ]


class TestInstanceBody:
    """The backup-instance PUT body: JSON object, media type, size, required fields, types, enums."""

    @pytest.mark.parametrize(("content", "headers", "status", "code"), _raw_cases())
    def test_raw_body(
        self, shared: Env, content: bytes, headers: dict[str, str], status: int, code: str
    ) -> None:
        r = shared.client.put(
            f"{shared.instance_path('raw')}?api-version={API}", content=content, headers=headers
        )
        assert_error(r, status, code)

    def test_over_4mb_streamed_without_content_length(self, shared: Env) -> None:
        chunks = (b" " * (1024 * 1024) for _ in range(5))
        r = shared.client.put(
            f"{shared.instance_path('raw')}?api-version={API}", content=chunks, headers=JSON
        )
        assert_error(r, 413, "RequestContentTooLarge")

    @pytest.mark.parametrize(
        ("path", "value", "code", "target"),
        BODY_CASES,
    )
    def test_invalid_field(self, shared: Env, path: str, value: Any, code: str, target: str) -> None:
        r = shared.put_instance("fields", edited(instance_body(shared.policy_id), (path, value)))
        assert_error(r, 400, code, target)

    def test_long_tag_names_up_to_512_characters_are_accepted(self, shared: Env) -> None:
        tags = {"n" * 512: "v", "é" * 300: "w" * 256}
        r = shared.put_instance("long-tags", {**instance_body(shared.policy_id), "tags": tags})
        assert r.status_code == 201, r.text
        assert r.json()["tags"] == tags
        r = shared.put_instance("long-tags", {**instance_body(shared.policy_id), "tags": {"n" * 513: "v"}})
        assert_error(r, 400, "InvalidTagNameCharacters", f"tags.{'n' * 100}...")

    def test_property_names_and_enum_values_match_case_insensitively(self, shared: Env) -> None:
        body = instance_body(shared.policy_id)
        props = body["properties"]
        props["dataSourceInfo"]["resourceId"] = props["dataSourceInfo"].pop("resourceID")
        props["FRIENDLYNAME"] = props.pop("friendlyName")
        props["validationType"] = "shallowvalidation"
        props["objectType"] = "backupinstance"
        props["datasourceAuthCredentials"]["secretStoreResource"]["secretStoreType"] = "azurekeyvault"
        props["policyInfo"]["policyParameters"]["dataStoreParametersList"][0]["dataStoreType"] = (
            "operationalstore"
        )
        r = shared.put_instance("case-insensitive", body)
        assert r.status_code == 201, r.text
        got = r.json()["properties"]
        assert got["dataSourceInfo"]["resourceID"].endswith("/databases/testdb")
        assert "resourceId" not in got["dataSourceInfo"]
        assert got["friendlyName"] == "harshitbi2" and "FRIENDLYNAME" not in got
        assert got["objectType"] == "BackupInstance"
        assert "validationType" not in got
        assert got["datasourceAuthCredentials"]["secretStoreResource"]["secretStoreType"] == "AzureKeyVault"
        assert (
            got["policyInfo"]["policyParameters"]["dataStoreParametersList"][0]["dataStoreType"]
            == "OperationalStore"
        )


class TestReferences:
    """policyInfo.policyId must name an existing policy of the same vault that covers the datasource."""

    @pytest.mark.parametrize(
        ("policy_id", "code"),
        [
            ("not-a-policy-id", "InvalidPolicyId"),
            ("{vault}/backupPolicies", "InvalidPolicyId"),
            ("{vault}/backupPolicies/missing", "BackupPolicyNotFound"),
            ("{other}/backupPolicies/policy1", "BackupPolicyNotInVault"),
        ],
    )
    def test_bad_policy_reference(self, shared: Env, policy_id: str, code: str) -> None:
        other = vault_path(shared.rg, "another-vault")
        body = instance_body(policy_id.format(vault=shared.vault_path, other=other))
        assert_error(shared.put_instance("refs", body), 400, code, "properties.policyInfo.policyId")

    def test_datasource_type_not_covered_by_the_policy(self, shared: Env) -> None:
        body = edited(
            instance_body(shared.policy_id),
            ("properties.dataSourceInfo.datasourceType", "Microsoft.Storage/storageAccounts/blobServices"),
        )
        r = shared.put_instance("refs", body)
        assert_error(r, 400, "DatasourceTypeNotSupportedByPolicy", "properties.dataSourceInfo.datasourceType")

    def test_an_ossdb_policy_accepts_a_postgresql_database(self, shared: Env) -> None:
        r = shared.client.put(
            f"{shared.vault_path}/backupPolicies/ossdb?api-version={API}", json=policy_body("OssDB")
        )
        assert r.status_code == 200, r.text
        r = shared.put_instance("ossdb-bi", instance_body(f"{shared.vault_path}/backupPolicies/ossdb"))
        assert r.status_code == 201, r.text


class TestMissingParents:
    """Reads and writes under a missing group or vault are ARM's 404s."""

    def test_put_instance_into_a_missing_vault(self, shared: Env) -> None:
        r = shared.client.put(
            f"{vault_path(shared.rg, 'no-such-vault')}/backupInstances/bi?api-version={API}",
            json=instance_body(shared.policy_id),
        )
        assert_error(r, 404, "ResourceNotFound")

    def test_get_in_a_missing_resource_group(self, client: httpx.Client) -> None:
        r = client.get(f"{vault_path('no-such-rg-7f3a', 'v')}/backupInstances/bi?api-version={API}")
        assert "'no-such-rg-7f3a'" in assert_error(r, 404, "ResourceGroupNotFound")["message"]

    def test_get_a_missing_instance(self, shared: Env) -> None:
        r = shared.client.get(f"{shared.instance_path('no-such-bi')}?api-version={API}")
        assert "no-such-bi" in assert_error(r, 404, "ResourceNotFound")["message"]


class TestMethodsAndRoutes:
    """Methods outside ARM's set, a method the route lacks, and an unknown route."""

    @pytest.mark.parametrize(
        "method",
        [
            "TRACE",
            "OPTIONS",
            "QUERY",
            "PROPFIND",
            pytest.param(
                "FOO",
                marks=pytest.mark.xfail(
                    strict=True,
                    reason="known limitation: the httptools parser refuses method tokens it does not know (a 400 InvalidHttpRequest CloudError, not 405)",
                ),
            ),
        ],
    )
    def test_method_outside_arms_set(self, server: Server, shared: Env, method: str) -> None:
        r = httpx.request(
            method, f"{server.base}{shared.instance_path('bi')}?api-version={API}",
            headers=shared.client.headers, verify=server.ssl_context(),
        )  # fmt: skip
        assert_error(r, 405, "MethodNotAllowed")
        assert "PUT" in r.headers["Allow"]

    def test_known_path_with_a_method_it_lacks(self, shared: Env) -> None:
        r = shared.client.post(f"{shared.instance_path('bi')}?api-version={API}", json={})
        assert_error(r, 405, "MethodNotAllowed")
        assert set(r.headers["Allow"].split(", ")) == {"DELETE", "GET", "PUT"}

    def test_unknown_route(self, client: httpx.Client) -> None:
        assert_error(client.get(f"/subscriptions/{SUB}/noSuchThing?api-version={API}"), 404, "NotFound")


def _claims(**changes: Any) -> dict[str, Any]:
    tenant, now = "00000000-0000-0000-0000-000000000001", int(time.time())
    claims = {
        "iss": f"https://sts.dpvault.local/{tenant}/", "aud": "https://management.azure.com/",
        "iat": now, "nbf": now, "exp": now + 3600, "tid": tenant, "oid": "someone", "scp": "user_impersonation",
    }  # fmt: skip
    return {**claims, **changes}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key(server: Server) -> str:
    public = (
        _server_key(server)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{_b64(header)}.{_b64(json.dumps(_claims()).encode())}"
    return f"Bearer {signing_input}.{_b64(hmac.new(public, signing_input.encode(), hashlib.sha256).digest())}"


def _server_key(server: Server) -> Any:
    return serialization.load_pem_private_key(
        (server.data_dir / "identity" / "signing-key.pem").read_bytes(), None
    )


def _signed(server: Server, **changes: Any) -> str:
    return "Bearer " + jwt.encode(_claims(**changes), _server_key(server), algorithm="RS256")


AUTH_CASES: dict[str, tuple[Callable[[Server], str | None], str]] = {
    "missing": (lambda s: None, "AuthenticationFailed"),
    "basic": (lambda s: "Basic xyz", "AuthenticationFailed"),
    "garbage": (lambda s: "Bearer garbage", "InvalidAuthenticationToken"),
    "expired-cli": (lambda s: "Bearer " + s.token("--lifetime=-3600"), "ExpiredAuthenticationToken"),
    "expired": (lambda s: _signed(s, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), "ExpiredAuthenticationToken"),
    "other-key": (
        lambda s: "Bearer " + jwt.encode(_claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"),
        "InvalidAuthenticationToken",
    ),
    "alg-none": (lambda s: "Bearer " + jwt.encode(_claims(), None, algorithm="none"), "InvalidAuthenticationToken"),
    "hs256-public-key": (_hs256_with_public_key, "InvalidAuthenticationToken"),
    "wrong-audience": (lambda s: _signed(s, aud="https://vault.azure.net/"), "InvalidAuthenticationToken"),
}  # fmt: skip


class TestAuthentication:
    """Every request needs a bearer token the server signed, for ARM's audience, not expired (401)."""

    @pytest.mark.parametrize("case", list(AUTH_CASES))
    def test_rejected(self, server: Server, case: str) -> None:
        make, code = AUTH_CASES[case]
        authorization = make(server)
        headers = {} if authorization is None else {"Authorization": authorization}
        url = f"{server.base}/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        r = httpx.get(url, headers=headers, verify=server.ssl_context())
        assert_error(r, 401, code)
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


@pytest.fixture(scope="module")
def slow(make_server: Callable[..., Server]) -> Iterator[Env]:
    """A server whose instance operations take 3 s, with a vault and policy: operations stay running."""
    server = make_server("--provisioning-delay", "3")
    with server.client() as c:
        yield Env(c).create()


class TestConflicts:
    """Writes that collide with a running operation get 409; an identical retry joins it (ARM-22)."""

    def test_writes_during_a_running_put(self, slow: Env) -> None:
        c, path = slow.client, f"{slow.instance_path('busy')}?api-version={API}"
        first = slow.put_instance("busy")
        assert first.status_code == 201, first.text
        retry = slow.put_instance("busy")
        assert retry.status_code == 201, retry.text
        assert retry.headers["Azure-AsyncOperation"] == first.headers["Azure-AsyncOperation"]
        other = c.put(path, json=instance_body(slow.policy_id, tags={"k": "different"}))
        assert_error(other, 409, "AnotherOperationInProgress")
        assert_error(c.delete(path), 409, "AnotherOperationInProgress")
        assert_error(c.delete(f"{slow.vault_path}?api-version={API}"), 409, "AnotherOperationInProgress")
        assert wait_operation(c, first.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        assert c.get(path).json()["tags"] == {"key1": "val1"}


class TestVaultAndPolicy:
    """Deletes that would orphan instances are 409; a vault PUT needs a location."""

    def test_delete_a_vault_that_holds_an_instance(self, env: Env) -> None:
        env.create_instance("keeps-vault")
        r = env.client.delete(f"{env.vault_path}?api-version={API}")
        assert "1 backup instance" in assert_error(r, 409, "BackupVaultNotEmpty")["message"]
        assert env.client.get(f"{env.vault_path}?api-version={API}").status_code == 200

    def test_delete_a_policy_in_use(self, env: Env) -> None:
        env.create_instance("uses-policy")
        r = env.client.delete(f"{env.policy_id}?api-version={API}")
        assert "uses-policy" in assert_error(r, 409, "PolicyInUse")["message"]
        assert env.client.get(f"{env.policy_id}?api-version={API}").status_code == 200

    @pytest.mark.parametrize("location", [DROP, None, "  "], ids=["missing", "null", "blank"])
    def test_vault_put_without_location(self, client: httpx.Client, location: Any) -> None:
        body = edited(vault_body(), ("location", location))
        r = client.put(f"{vault_path('rg-no-location', 'v1')}?api-version={API}", json=body)
        assert_error(r, 400, "InvalidRequestContent", "location")


class TestPaging:
    """$skipToken and $top are validated: a bad one is 400, never a database error."""

    @pytest.mark.parametrize(
        ("query", "code"),
        [
            ("$top=0", "InvalidTop"),
            ("$top=abc", "InvalidTop"),
            ("$skipToken=!!!", "InvalidSkipToken"),
            ("$skipToken=" + _b64(b"\xff\xfe"), "InvalidSkipToken"),
            pytest.param("$skipToken=" + _b64(b"9" * 30), "InvalidSkipToken", id="skiptoken-out-of-range"),
            pytest.param("$skipToken=" + _b64(b"-1"), "InvalidSkipToken", id="skiptoken-negative"),
        ],
    )  # fmt: skip
    def test_bad_paging_parameter(self, shared: Env, query: str, code: str) -> None:
        r = shared.client.get(f"{shared.vault_path}/backupInstances?api-version={API}&{query}")
        assert_error(r, 400, code)
