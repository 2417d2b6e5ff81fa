"""Property-based robustness fuzzing over HTTPS: no input may produce a 500.

Hypothesis drives a dedicated ``dpvault serve`` process with
(a) mutations of the valid backup-instance PUT body (keys deleted, renamed with random casing or
    added, values replaced by JSON of another type, huge and odd Unicode strings, deep nesting),
(b) random and mutated bodies for vault PUT/PATCH, policy PUT, validateForBackup, checkNameAvailability
    and resource-group PUT,
(c) random names (any Unicode, control characters, ``%``, ``/``), percent-encoded into the path of
    GET/PUT/DELETE/PATCH on resource groups, vaults, policies, instances and operations,
(d) random query strings (api-version, ``$top``, ``$skipToken``, casing, repeats),
(e) random Content-Type, Accept and x-ms-client-request-id (and related) header values.

Every response must be below 500, carry no CR/LF in any header, and every 4xx must be a CloudError
``{"error": {"code": str, "message": str}}`` as ``application/json; charset=utf-8``.

The committed run is derandomized (the same examples every run). Environment knobs for exploring:
``DPVAULT_FUZZ_SCALE=20`` multiplies every ``max_examples``; ``DPVAULT_FUZZ_RANDOM=1`` draws fresh
random examples instead (a failure prints a ``@reproduce_failure`` blob to replay it).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

SCALE = float(os.environ.get("DPVAULT_FUZZ_SCALE", "1"))
RANDOM = os.environ.get("DPVAULT_FUZZ_RANDOM", "") not in ("", "0")
REQUEST_TIMEOUT = 15.0  # a request that takes longer has wedged the server: that is a failure too
RUN = uuid.uuid4().hex[:6]  # in every name this module creates, so runs and other tests never collide
CLOUD_ERROR_TYPE = "application/json; charset=utf-8"
DP = "providers/Microsoft.DataProtection"


def fuzz(examples: int) -> settings:
    """Settings for one fuzz test: reproducible unless DPVAULT_FUZZ_RANDOM is set."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=RANDOM,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- the server under test, and the checks every response gets ------------------------------------


@dataclass
class Fuzz:
    """A dedicated server with a vault, a policy and a second vault to PATCH, all named for this run."""

    server: Server
    client: httpx.Client
    env: Env
    patch_vault: str
    counter: Iterator[int] = field(default_factory=itertools.count)
    wedged: str | None = None

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{RUN}-{next(self.counter)}"

    def send(
        self, method: str, url: str, *, content: bytes | None = None, headers: dict[str, Any] | None = None
    ) -> httpx.Response:
        """One request; fails the example on a 5xx, a non-CloudError 4xx, CR/LF in a header or no answer."""
        repro = _repro(method, url, headers, content)
        if self.wedged is not None:
            raise AssertionError(f"the server stopped answering after an earlier request:\n{self.wedged}")
        try:
            r = self.client.request(method, url, content=content, headers=headers, timeout=REQUEST_TIMEOUT)
        except httpx.TimeoutException:
            self.wedged = repro
            raise AssertionError(
                f"no response within {REQUEST_TIMEOUT:.0f} s (the server is wedged; later requests "
                f"of this module fail fast):\n{repro}"
            ) from None
        problems = response_problems(r)
        if problems:
            raise AssertionError(
                "; ".join(problems) + f"\n{repro}\n--- response {r.status_code}:\n"
                f"{_clip(r.content, 1000)}{self._traceback(r)}"
            )
        return r

    def _traceback(self, r: httpx.Response) -> str:
        """The server log's traceback for this request (by x-ms-request-id), if it logged one."""
        request_id = r.headers.get("x-ms-request-id")
        if r.status_code < 500 or not request_id:
            return ""
        lines = self.server.log().splitlines()
        for i, line in enumerate(lines):
            if request_id in line and "unhandled error" in line:
                tail = []
                for more in lines[i + 1 :]:
                    if re.match(r"^\d{4}-\d{2}-\d{2}T", more):
                        break
                    tail.append(more)
                exceptions = [t for t in tail if re.match(r"^\s*[\w.]+(Error|Exception)\b", t)]
                return "\n--- server traceback ends with:\n" + "\n".join(exceptions[-1:] or tail[-5:])
        return ""


def response_problems(r: httpx.Response) -> list[str]:
    problems = []
    if r.status_code >= 500:
        problems.append(f"server error {r.status_code}")
    for name, value in r.headers.raw:
        if any(c in name + value for c in (b"\r", b"\n")):
            problems.append(f"CR/LF in response header {name!r}: {value!r}")
    content_type = r.headers.get("content-type")
    if r.status_code >= 400:
        if content_type != CLOUD_ERROR_TYPE:
            problems.append(f"error Content-Type is {content_type!r}, not {CLOUD_ERROR_TYPE!r}")
        try:
            body = r.json()
        except ValueError:
            problems.append("error body is not JSON")
        else:
            error = body.get("error") if isinstance(body, dict) else None
            if (
                not isinstance(body, dict)
                or list(body) != ["error"]
                or not isinstance(error, dict)
                or not isinstance(error.get("code"), str)
                or not error["code"]
                or not isinstance(error.get("message"), str)
            ):
                problems.append('error body is not a CloudError {"error": {"code": str, "message": str}}')
    elif r.content:
        if not (content_type or "").startswith("application/json"):
            problems.append(f"success body with Content-Type {content_type!r}")
        else:
            try:
                r.json()
            except ValueError:
                problems.append("success body is not JSON")
    return problems


def _clip(data: bytes | str | None, limit: int) -> str:
    if data is None:
        return "(none)"
    text = repr(data)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(data)} in all)"


def _repro(method: str, url: str, headers: dict[str, Any] | None, content: bytes | None) -> str:
    return f"--- request: {method} {url}\n    headers: {headers or {}}\n    body: {_clip(content, 1500)}"


@pytest.fixture(scope="module")
def fz(make_server: Callable[..., Server]) -> Iterator[Fuzz]:
    """Its own server: fuzz writes stay out of the shared one, and a wedged server fails only here."""
    server = make_server()
    with server.client() as client:
        env = Env(client, rg=f"rg-fuzz-{RUN}", vault=f"vault-fuzz-{RUN}").create()
        patch_vault = vault_path(env.rg, f"vault-patch-{RUN}")
        r = client.put(f"{patch_vault}?api-version={API}", json=vault_body())
        assert r.status_code == 201, r.text
        wait_operation(client, r.headers["Azure-AsyncOperation"])
        yield Fuzz(server, client, env, patch_vault)


# -- JSON: values, mutations, and a serialiser for deep nesting -----------------------------------

# Property names of the 2023-01-01 spec (and ARM's envelope): mutations reuse them so that inserted
# and renamed keys reach the schema, not only msgspec's "unknown field" path.
VOCABULARY = [
    "id", "name", "type", "tags", "location", "properties", "systemData", "identity", "eTag", "managedBy",
    "objectType", "friendlyName", "dataSourceInfo", "dataSourceSetInfo", "resourceID", "datasourceType",
    "resourceLocation", "resourceName", "resourceType", "resourceUri", "policyInfo", "policyId",
    "policyVersion", "policyParameters", "dataStoreParametersList", "backupDatasourceParametersList",
    "dataStoreType", "resourceGroupId", "containersList", "snapshotVolumes", "includeClusterScopeResources",
    "includedNamespaces", "labelSelectors", "datasourceAuthCredentials", "secretStoreResource",
    "secretStoreType", "uri", "value", "validationType", "provisioningState", "protectionStatus", "status",
    "errorDetails", "currentProtectionState", "protectionErrorDetails", "code", "message", "target",
    "isRetryable", "isUserError", "recommendedAction", "details", "innerError", "embeddedInnerError",
    "additionalInfo", "storageSettings", "datastoreType", "monitoringSettings", "azureMonitorAlertSettings",
    "alertsForAllJobFailures", "securitySettings", "softDeleteSettings", "state", "retentionDurationInDays",
    "immutabilitySettings", "featureSettings", "crossSubscriptionRestoreSettings", "resourceMoveState",
    "resourceMoveDetails", "isVaultProtectedByResourceGuard", "principalId", "tenantId", "datasourceTypes",
    "policyRules", "backupParameters", "backupType", "dataStore", "trigger", "schedule",
    "repeatingTimeIntervals", "timeZone", "taggingCriteria", "isDefault", "taggingPriority", "tagInfo",
    "tagName", "criteria", "absoluteCriteria", "daysOfMonth", "date", "isLast", "daysOfTheWeek",
    "monthsOfYear", "scheduleTimes", "weeksOfTheMonth", "lifecycles", "deleteAfter", "duration",
    "sourceDataStore", "targetDataStoreCopySettings", "copyAfter", "backupInstance", "createdBy",
    "createdByType", "createdAt", "lastModifiedBy", "lastModifiedByType", "lastModifiedAt",
]  # fmt: skip
ENUM_VALUES = [
    "BackupInstance", "Datasource", "DatasourceSet", "SecretStoreBasedAuthCredentials", "AzureKeyVault",
    "Invalid", "AzureOperationalStoreParameters", "BlobBackupDatasourceParameters",
    "KubernetesClusterBackupDatasourceParameters", "OperationalStore", "VaultStore", "ArchiveStore",
    "ShallowValidation", "DeepValidation", "BackupPolicy", "AzureBackupRule", "AzureRetentionRule",
    "AzureBackupParams", "ScheduleBasedTriggerContext", "AdhocBasedTriggerContext",
    "ScheduleBasedBackupCriteria", "AbsoluteDeleteOption", "CopyOnExpiryOption", "CustomCopyOption",
    "ImmediateCopyOption", "DataStoreInfoBase", "LocallyRedundant", "GeoRedundant", "ZoneRedundant",
    "SystemAssigned", "None", "UserAssigned", "Enabled", "Disabled", "On", "Off", "AlwaysOn", "Locked",
    "Succeeded", "Failed", "Provisioning", "Updating", "Deleting", "OssDB",
    "Microsoft.DBforPostgreSQL/servers/databases", "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.ContainerService/managedClusters", "Microsoft.DataProtection/backupVaults", "User",
    "Application", "Full", "Incremental", "AllBackup", "FirstOfDay", "Monday", "January", "First", "Last",
    "UTC", "westus", "West US", "eastus2euap",
]  # fmt: skip
ODD_STRINGS = [
    "", " ", "\t", "\x00", "a\x00b", "\r\nX-Injected: yes", "%", "%00", "%zz", "/", "//", "../..", "\\",
    "null", "true", "0", "-1", "1e400", "NaN", "\u0130" * 40, "\u202e", "\ufeff", "\U0001f4a9", "<>&'\"",
    "P0D", "PT0S", "P-1D", "P99999Y", "P999999999999D", "PT999999999999999H", "P1.5M", "R0/2021-01-01T00:00:00Z/P1D",
    "R/0000-01-01T00:00:00Z/P1D", "R/9999-12-31T23:59:59Z/P1Y", "R99999999999999999999/2021-01-01T00:00:00Z/P1D",
    "2021-02-30T25:61:61Z", "9999-12-31T23:59:60+14:00", "/subscriptions", "/subscriptions/x/resourceGroups",
]  # fmt: skip

_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
_huge = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(300, 120_000))


def recased(words: list[str]) -> st.SearchStrategy[str]:
    """A word with each letter's case flipped at random."""
    return st.sampled_from(words).flatmap(
        lambda w: st.lists(st.booleans(), min_size=len(w), max_size=len(w)).map(
            lambda flips: "".join(c.swapcase() if f else c for c, f in zip(w, flips, strict=True))
        )
    )


def strings(policy_prefix: str = "") -> st.SearchStrategy[str]:
    """Strings a parser should survive: Unicode (controls, lone surrogates), spec words, ISO 8601 edge
    cases, ARM ids; ``policy_prefix`` makes policy ids of the fuzz vault with odd names."""
    options = [
        st.text(max_size=40),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(ENUM_VALUES),
        recased(ENUM_VALUES),
        _surrogates,
        st.from_regex(r"\AP(\d{1,14}[YMWD]){1,3}(T\d{1,14}[HMS])?\Z"),
        st.from_regex(r"\AR\d{0,22}/[+-]?\d{4,7}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?/P\d{1,14}[DWMY]\Z"),
        st.from_regex(r"\A/subscriptions/[^/]{0,40}/resourceGroups/[^/]{0,20}(/providers/[^/]{0,20})?\Z"),
    ]  # fmt: skip
    if policy_prefix:
        options.append(st.text(max_size=30).map(lambda n: f"{policy_prefix}/backupPolicies/{n}"))
        options.append(st.sampled_from([policy_prefix, policy_prefix.upper(), policy_prefix + "/"]))
    return st.one_of(options)


keys = st.one_of(st.sampled_from(VOCABULARY), recased(VOCABULARY), st.text(max_size=20), _surrogates)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**200), max_value=2**200),
        st.floats(),  # NaN and Infinity are not JSON: the server must refuse them with a 400
        text,
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=10,
    )


def values_of_kind(kind: str, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return {
        "null": st.none(),
        "bool": st.booleans(),
        "int": st.integers() | st.integers(min_value=-(2**200), max_value=2**200),
        "float": st.floats(),
        "str": text,
        "list": st.lists(json_values(text), max_size=4),
        "dict": st.dictionaries(keys, json_values(text), max_size=4),
    }[kind]


def kind_of(value: Any) -> str:
    for kind, types in (("null", type(None)), ("bool", bool), ("int", int), ("float", float), ("str", str),
                        ("list", list), ("dict", dict)):  # fmt: skip
        if isinstance(value, types):
            return kind
    return "deep"


@dataclass(frozen=True)
class Deep:
    """``depth`` levels of ``{key: ...}``, ``[...]`` or ``{key: [...]}`` around ``leaf``, serialised
    without recursion, so depths near the decoder's limit can be sent."""

    key: str
    shape: str
    depth: int
    leaf: Any


deep_values = st.builds(
    Deep,
    key=st.sampled_from(["details", "innerError", "embeddedInnerError", "properties", "criteria", "x"])
    | keys,
    shape=st.sampled_from(["dict", "list", "dict-list"]),
    depth=st.integers(2, 1100),
    leaf=st.none() | st.just({}) | st.just([]) | st.text(max_size=5),
)


def dumps(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; lone surrogates become invalid UTF-8 (or ``\\udXXX`` escapes when ascii_only)."""
    return _dump(value, ascii_only).encode("utf-8", "surrogatepass")


def _dump(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Deep):
        key = json.dumps(value.key, ensure_ascii=ascii_only)
        opening, closing = {
            "dict": ("{%s:" % key, "}"),
            "list": ("[", "]"),
            "dict-list": ("{%s:[" % key, "]}"),
        }[value.shape]
        return opening * value.depth + _dump(value.leaf, ascii_only) + closing * value.depth
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=ascii_only)}:{_dump(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _replace(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(body, path[:-1])[path[-1]] = value
    return body


MUTATIONS = ["delete", "retype", "rename", "insert", "string", "huge", "deep"]


@st.composite
def mutated(draw: st.DrawFn, base: Any, text: st.SearchStrategy[str]) -> Any:
    """``base`` after one to four random edits anywhere in its tree."""
    body = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(MUTATIONS))
        paths = [p for p in _paths(body) if not isinstance(_get(body, p), Deep)]
        if op in ("delete", "rename"):
            entries = [
                p for p in paths if p and isinstance(_get(body, p[:-1]), dict if op == "rename" else object)
            ]
            if not entries:
                continue
            path = draw(st.sampled_from(entries))
            parent = _get(body, path[:-1])
            moved = parent.pop(path[-1])
            if op == "rename":
                parent[draw(recased([path[-1]]) | keys)] = moved
        elif op == "insert":
            containers = [p for p in paths if isinstance(_get(body, p), dict | list)]
            if not containers:
                continue
            node = _get(body, draw(st.sampled_from(containers)))
            item = draw(json_values(text) | deep_values)
            if isinstance(node, dict):
                node[draw(keys)] = item
            else:
                node.insert(draw(st.integers(0, len(node))), item)
        else:
            path = draw(st.sampled_from(paths))
            if op == "retype":
                current = kind_of(_get(body, path))
                other = draw(st.sampled_from([k for k in ("null", "bool", "int", "float", "str", "list", "dict")
                                              if k != current]))  # fmt: skip
                new = draw(values_of_kind(other, text))
            else:
                new = draw({"string": text, "huge": _huge, "deep": deep_values}[op])
            body = _replace(body, path, new)
    return body


def payloads(base: Any, text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Request bodies: mostly mutations of a valid ``base``, some random JSON, some raw bytes."""
    documents = st.one_of(mutated(base, text), mutated(base, text), mutated(base, text), json_values(text))
    return st.one_of(
        st.builds(dumps, documents, st.booleans()),
        st.builds(dumps, documents, st.booleans()),
        st.binary(max_size=64),
    )


JSON_HEADERS = {"Content-Type": "application/json"}


def _ok(r: httpx.Response) -> bool:
    return 200 <= r.status_code < 300


def _follow_up(fz: Fuzz, url: str, r: httpx.Response) -> None:
    """After an accepted write: the resource and its operation still read back without a 5xx."""
    fz.send("GET", url)
    status_url = r.headers.get("Azure-AsyncOperation")
    if status_url:
        fz.send("GET", status_url)


# -- (a) the backup-instance PUT body ----------------------------------------------------------


def test_backup_instance_put_body_mutations(fz: Fuzz) -> None:
    base = instance_body(fz.env.policy_id)

    @fuzz(250)
    @given(body=payloads(base, strings(fz.env.vault_path)))
    def run(body: bytes) -> None:
        url = f"{fz.env.instance_path(fz.unique('bi'))}?api-version={API}"
        r = fz.send("PUT", url, content=body, headers=JSON_HEADERS)
        if _ok(r):
            _follow_up(fz, url, r)

    run()


# -- (b) bodies of the other writes ------------------------------------------------------------


PATCH_BASE = {
    "tags": {"env": "fuzz"},
    "identity": {"type": "SystemAssigned"},
    "properties": {
        "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"}},
        "securitySettings": {
            "softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
            "immutabilitySettings": {"state": "Disabled"},
        },
        "featureSettings": {"crossSubscriptionRestoreSettings": {"state": "Enabled"}},
    },
}
GROUP_BASE = {"location": "westus", "tags": {"k": "v"}, "managedBy": "someone"}
NAME_CHECK_BASE = {"name": "vault1", "type": "Microsoft.DataProtection/backupVaults"}


def test_vault_put_bodies(fz: Fuzz) -> None:
    base = {**vault_body(), "tags": {"k": "v"}, "identity": {"type": "SystemAssigned"}}

    @fuzz(100)
    @given(body=payloads(base, strings()), existing=st.booleans())
    def run(body: bytes, existing: bool) -> None:
        vault = fz.env.vault if existing else fz.unique("v")  # an update of the fuzz vault, or a create
        url = f"{vault_path(fz.env.rg, vault)}?api-version={API}"
        r = fz.send("PUT", url, content=body, headers=JSON_HEADERS)
        if _ok(r):
            _follow_up(fz, url, r)

    run()


def test_vault_patch_bodies(fz: Fuzz) -> None:
    @fuzz(80)
    @given(body=payloads(PATCH_BASE, strings()))
    def run(body: bytes) -> None:
        url = f"{fz.patch_vault}?api-version={API}"
        if _ok(fz.send("PATCH", url, content=body, headers=JSON_HEADERS)):
            fz.send("GET", url)

    run()


def test_policy_put_bodies(fz: Fuzz) -> None:
    @fuzz(150)
    @given(body=payloads(policy_body(), strings()))
    def run(body: bytes) -> None:
        url = f"{fz.env.vault_path}/backupPolicies/{fz.unique('p')}?api-version={API}"
        if _ok(fz.send("PUT", url, content=body, headers=JSON_HEADERS)):
            fz.send("GET", url)

    run()


def test_validate_for_backup_bodies(fz: Fuzz) -> None:
    base = {"backupInstance": instance_body(fz.env.policy_id)["properties"]}

    @fuzz(100)
    @given(body=payloads(base, strings(fz.env.vault_path)))
    def run(body: bytes) -> None:
        r = fz.send(
            "POST",
            f"{fz.env.vault_path}/validateForBackup?api-version={API}",
            content=body,
            headers=JSON_HEADERS,
        )
        if _ok(r):
            fz.send("GET", r.headers["Location"])

    run()


def test_check_name_availability_bodies(fz: Fuzz) -> None:
    url = f"{rg_path(fz.env.rg)}/{DP}/locations/westus/checkNameAvailability?api-version={API}"

    @fuzz(40)
    @given(body=payloads(NAME_CHECK_BASE, strings()))
    def run(body: bytes) -> None:
        fz.send("POST", url, content=body, headers=JSON_HEADERS)

    run()


def test_resource_group_put_bodies(fz: Fuzz) -> None:
    @fuzz(60)
    @given(body=payloads(GROUP_BASE, strings()), existing=st.booleans())
    def run(body: bytes, existing: bool) -> None:
        group = f"rg-fuzz-{RUN}-existing" if existing else fz.unique("rg-fuzz")
        url = f"{rg_path(group)}?api-version=2021-04-01"
        if _ok(fz.send("PUT", url, content=body, headers=JSON_HEADERS)):
            fz.send("GET", url)

    run()


# -- (c) names in the path ---------------------------------------------------------------------

names = st.one_of(
    st.text(max_size=30),  # any Unicode but lone surrogates, control characters included
    st.text(st.sampled_from(list("%/\\?#&*:<>.\x00\t\r\n ()-_~+İıſ\u200b\u202e\U0001f4a9aZ9")), max_size=12),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(1, 300)),  # near the limits
    st.sampled_from(["", ".", "..", "%", "%25", "%2F", "a/b", "a b", " a", "a.", "-", "_", "()", "\x7f"]),
)


@st.composite
def encoded_names(draw: st.DrawFn) -> str:
    """A path segment: a name percent-encoded as UTF-8, or raw bytes percent-encoded (maybe not UTF-8)."""
    if draw(st.integers(0, 5)) == 0:
        return quote_from_bytes(draw(st.binary(max_size=12)), safe="")
    return quote(draw(names), safe="")


TARGETS = {  # (collection, methods, which names may be random)
    "group": (("GET", "PUT", "DELETE"), ("rg",)),
    "vault": (("GET", "PUT", "PATCH", "DELETE"), ("rg", "vault")),
    "policy": (("GET", "PUT", "DELETE"), ("rg", "vault", "name")),
    "instance": (("GET", "PUT", "DELETE"), ("rg", "vault", "name")),
    "vaults": (("GET",), ("rg",)),
    "policies": (("GET",), ("rg", "vault")),
    "instances": (("GET",), ("rg", "vault")),
    "operationStatus": (("GET",), ("rg", "vault", "name")),
    "operationResults": (("GET",), ("rg", "vault", "name")),
    "checkName": (("POST",), ("rg",)),
}


@st.composite
def named_requests(draw: st.DrawFn, fz: Fuzz) -> tuple[str, str, bytes | None]:
    target = draw(st.sampled_from(sorted(TARGETS)))
    methods, slots = TARGETS[target]
    method = draw(st.sampled_from(methods))
    slot = draw(st.sampled_from(slots))
    random_name = draw(encoded_names())
    if slot == "rg" and method != "GET":
        # writes and deletes of groups with random names stay inside this run's names
        random_name = draw(st.sampled_from([f"{random_name}{RUN}", f"{RUN}{random_name}"]))
    rg = random_name if slot == "rg" else fz.env.rg
    vault = random_name if slot == "vault" else fz.env.vault
    name = random_name if slot == "name" else fz.unique("n")
    v = f"/subscriptions/{SUB}/resourceGroups/{rg}/{DP}/backupVaults/{vault}"
    path, body = {
        "group": (f"/subscriptions/{SUB}/resourceGroups/{rg}", GROUP_BASE),
        "vault": (v, vault_body() if method == "PUT" else {"tags": {"k": "v"}}),
        "policy": (f"{v}/backupPolicies/{name}", policy_body()),
        "instance": (f"{v}/backupInstances/{name}", instance_body(fz.env.policy_id)),
        "vaults": (f"/subscriptions/{SUB}/resourceGroups/{rg}/{DP}/backupVaults", None),
        "policies": (f"{v}/backupPolicies", None),
        "instances": (f"{v}/backupInstances", None),
        "operationStatus": (f"{v}/operationStatus/{name}", None),
        "operationResults": (f"{v}/operationResults/{name}", None),
        "checkName": (
            f"/subscriptions/{SUB}/resourceGroups/{rg}/{DP}/locations/westus/checkNameAvailability",
            NAME_CHECK_BASE,
        ),
    }[target]
    api = "2021-04-01" if target == "group" else API
    content = json.dumps(body).encode() if method in ("PUT", "PATCH", "POST") else None
    return method, f"{path}?api-version={api}", content


def test_random_names_in_paths(fz: Fuzz) -> None:
    @fuzz(250)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, url, content = data.draw(named_requests(fz))
        fz.send(method, url, content=content, headers=JSON_HEADERS if content is not None else None)

    run()


def test_random_operation_ids(fz: Fuzz) -> None:
    """Operation ids are not names: any text (percent-encoded) at all three status scopes and the results."""
    scopes = [
        f"/subscriptions/{SUB}/{DP}/locations/westus/operationStatus",
        f"{rg_path(fz.env.rg)}/{DP}/operationStatus",
        f"{fz.env.vault_path}/operationStatus",
        f"/subscriptions/{SUB}/{DP}/locations/westus/operationResults",
        f"{fz.env.vault_path}/operationResults",
        f"{fz.env.instance_path('bi')}/operationResults",
    ]

    @fuzz(60)
    @given(
        scope=st.sampled_from(scopes), op_id=encoded_names() | st.binary(max_size=60).map(base64.b64encode)
    )
    def run(scope: str, op_id: str | bytes) -> None:
        if isinstance(op_id, bytes):
            op_id = quote(op_id.decode(), safe="")
        fz.send("GET", f"{scope}/{op_id}?api-version={API}")

    run()


# -- (d) query strings -------------------------------------------------------------------------

API_VERSIONS = ["2023-01-01", "2026-06-01", "2021-04-01", "2023-01-01-preview", "2023-1-1", "2099-01-01"]
query_values = {
    "api-version": st.one_of(
        st.sampled_from(API_VERSIONS),
        recased(["2023-01-01-PREVIEW", "2021-04-01"]),
        st.from_regex(r"\A\d{1,5}-\d{1,3}-\d{1,3}(-[a-z]{0,15})?\Z"),
        st.text(max_size=20),
        st.sampled_from(API_VERSIONS).map(lambda v: v + "\x00"),
    ),
    "$top": st.one_of(
        st.integers(-5, 2000).map(str),
        st.integers(min_value=0, max_value=10**40).map(str),
        st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4),  # Unicode digits
        st.text(max_size=8),
        st.sampled_from(["1.5", "+1", " 1", "1 ", "0x10", "1_0", "1e2"]),
    ),
    "$skipToken": st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(
            lambda n: base64.urlsafe_b64encode(str(n).encode())
        ),
        st.binary(max_size=24).map(base64.urlsafe_b64encode),
        st.binary(max_size=24).map(base64.b64encode),
    ).map(lambda b: b.decode().rstrip("=") if b else "")
    | st.text(max_size=20),
}
query_names = st.one_of(
    st.sampled_from(sorted(query_values)),
    recased(sorted(query_values)),
    st.sampled_from(["$filter", "$expand", "api-version ", "x"]),
    st.text(max_size=8),
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    parts = []
    for name in draw(st.lists(query_names, max_size=5)):
        value = draw(query_values.get(name.lower().replace("$skiptoken", "$skipToken"), st.text(max_size=12)))
        if draw(st.integers(0, 9)) == 0:
            parts.append(quote(name, safe=""))  # a name without "="
        else:
            parts.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), f"api-version={draw(st.sampled_from(API_VERSIONS))}")
    return "&".join(parts)


def test_random_query_strings(fz: Fuzz) -> None:
    e = fz.env
    urls = [
        f"{e.vault_path}/backupInstances",
        f"{e.vault_path}/backupPolicies",
        f"{rg_path(e.rg)}/{DP}/backupVaults",
        f"/subscriptions/{SUB}/{DP}/backupVaults",
        f"/subscriptions/{SUB}/resourcegroups",
        rg_path(e.rg),
        e.vault_path,
        e.policy_id,
        e.instance_path("no-such-bi"),
        f"/{DP}/operations",
    ]

    @fuzz(200)
    @given(url=st.sampled_from(urls), query=queries())
    def run(url: str, query: str) -> None:
        r = fz.send("GET", f"{url}?{query}")
        next_link = r.json().get("nextLink") if r.status_code == 200 else None
        if next_link:
            fz.send("GET", next_link)

    run()


# -- (e) header values -------------------------------------------------------------------------

# A header value as HTTP allows it (visible ASCII, obs-text bytes, inner spaces and tabs): anything
# else is refused by the HTTP parser before dpvault sees it, so it is not dpvault's input.
_field_char = st.one_of(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                        st.characters(min_codepoint=0x80, max_codepoint=0xFF), st.sampled_from(" \t"))  # fmt: skip
field_values = st.text(_field_char, max_size=60).map(lambda s: s.strip(" \t"))
header_values = {
    "Content-Type": st.one_of(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "APPLICATION/JSON",
                "text/json",
                "application/merge-patch+json",
                "application/json-patch+json",
                "text/plain",
                "application/xml",
                "multipart/form-data; boundary=x",
                "application/json; charset=latin-1",
                "application/json;;;",
                ";",
                "application/",
                "/json",
                "*/*",
            ]
        ),
        recased(["application/json", "text/json"]),
        field_values,
    ),  # fmt: skip
    "Accept": st.sampled_from(["application/json", "*/*", "text/html", "application/xml;q=0.9", ""])
    | field_values,
    "x-ms-client-request-id": field_values | st.uuids().map(str),
    "x-ms-return-client-request-id": st.sampled_from(["true", "TRUE", "false", "1", ""]) | field_values,
    "x-ms-correlation-request-id": field_values,
    "x-ms-arm-resource-system-data": st.builds(dumps, json_values(st.text(max_size=10)), st.just(True)).map(
        lambda b: b.decode("ascii").replace("\n", " ")
    )
    | field_values,
}


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, bytes]:
    chosen = draw(st.lists(st.sampled_from(sorted(header_values)), unique=True, max_size=len(header_values)))
    return {name: draw(header_values[name]).encode("latin-1") for name in chosen}


def test_random_header_values(fz: Fuzz) -> None:
    e = fz.env

    @fuzz(150)
    @given(headers=header_sets(), method=st.sampled_from(["GET", "PUT", "POST", "PATCH", "DELETE"]))
    def run(headers: dict[str, bytes], method: str) -> None:
        if method == "PUT":
            url, body = e.instance_path(fz.unique("h")), instance_body(e.policy_id)
        elif method == "POST":
            url, body = (
                f"{e.vault_path}/validateForBackup",
                {"backupInstance": instance_body(e.policy_id)["properties"]},
            )
        elif method == "PATCH":
            url, body = fz.patch_vault, {"tags": {"k": "v"}}
        elif method == "DELETE":
            url, body = e.instance_path(fz.unique("h")), None
        else:
            url, body = f"{e.vault_path}/backupInstances", None
        content = json.dumps(body).encode() if body is not None else None
        r = fz.send(method, f"{url}?api-version={API}", content=content, headers=headers)
        echo = headers.get("x-ms-client-request-id")
        if echo and headers.get("x-ms-return-client-request-id", b"").lower() == b"true":
            assert r.headers.raw and (b"x-ms-client-request-id", echo) in [
                (n.lower(), v) for n, v in r.headers.raw
            ]

    run()


# -- afterwards --------------------------------------------------------------------------------


def test_the_fuzzed_state_still_reads_and_deletes(fz: Fuzz) -> None:
    """Whatever the fuzzing stored reads back, lists, and deletes without a 5xx (runs last)."""
    e = fz.env
    for url in (f"{e.vault_path}/backupInstances", f"{e.vault_path}/backupPolicies",
                f"{rg_path(e.rg)}/{DP}/backupVaults", f"/subscriptions/{SUB}/{DP}/backupVaults"):  # fmt: skip
        next_url: str | None = f"{url}?api-version={API}&$top=50"
        while next_url:
            page = fz.send("GET", next_url).json()
            next_url = page.get("nextLink")
    fz.send("GET", f"/subscriptions/{SUB}/resourcegroups?api-version=2021-04-01")
    fz.send("DELETE", f"{e.policy_id}?api-version={API}")  # in use: 409, reading every stored instance
    fz.send("DELETE", f"{e.vault_path}?api-version={API}")  # not empty (or busy): 409
    fz.send("DELETE", f"{rg_path(e.rg)}?api-version=2021-04-01")  # busy (409) or everything goes (200)
