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
import contextlib
import copy
import itertools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
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
RG, VAULT = f"rg-fuzz-{RUN}", f"vault-fuzz-{RUN}"
VAULT_PATH = vault_path(RG, VAULT)
POLICY_ID = f"{VAULT_PATH}/backupPolicies/policy1"
PATCH_VAULT = vault_path(RG, f"vault-patch-{RUN}")


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
            _fail(
                "Wedged",
                f"the server stopped answering after an earlier request of this test:\n{self.wedged}",
            )
        try:
            r = self.client.request(method, url, content=content, headers=headers, timeout=REQUEST_TIMEOUT)
        except httpx.TimeoutException:
            self.wedged = repro
            _fail("Wedged", f"no response within {REQUEST_TIMEOUT:.0f} s; the server is wedged:\n{repro}")
        _record(r)
        problems = response_problems(r)
        if problems:
            exception, traceback = self._traceback(r)
            kind = f"ServerError_{exception}" if r.status_code >= 500 else "BadResponse"
            _fail(
                kind,
                "; ".join(problems)
                + f"\n{repro}\n--- response {r.status_code}: {_clip(r.content, 1000)}{traceback}",
            )
        return r

    def revive(self) -> None:
        """A server an earlier test wedged is restarted (same data, port and keys) for the next test."""
        if self.wedged is not None:
            self.server.kill()
            self.server.start()
            self.wedged = None

    def _traceback(self, r: httpx.Response) -> tuple[str, str]:
        """(exception type, the end of the traceback) the server logged for this 5xx, if it did."""
        request_id = r.headers.get("x-ms-request-id")
        if r.status_code < 500 or not request_id:
            return "", ""
        lines = self.server.log().splitlines()
        start = next((i for i, line in enumerate(lines) if request_id in line and "unhandled" in line), None)
        if start is None:
            return "", ""
        end = next(
            (i for i in range(start + 1, len(lines)) if re.match(r"^\d{4}-\d\d-\d\dT", lines[i])), len(lines)
        )
        exceptions = [
            line for line in lines[start + 1 : end] if re.match(r"^[\w.]+(Error|Exception)\b", line)
        ]
        last = exceptions[-1] if exceptions else lines[end - 1]
        return re.sub(r"\W", "_", last.split(":")[0]), f"\n--- server traceback ends with:\n{last}"


def _record(r: httpx.Response) -> None:
    """What the examples reached, for ``pytest --hypothesis-show-statistics``."""
    code = ""
    if r.status_code >= 400 and r.headers.get("content-type") == CLOUD_ERROR_TYPE:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            code = " " + r.json()["error"]["code"]
    if currently_in_test_context():
        event(f"{r.request.method} {r.status_code}{code}")


_failure_types: dict[str, type[AssertionError]] = {}


def _fail(kind: str, message: str) -> NoReturn:
    """Raise an AssertionError subclass named by ``kind``: Hypothesis tells failures apart by type (and
    raise site), so each kind of server exception gets its own minimal example."""
    if kind not in _failure_types:
        _failure_types[kind] = type(kind, (AssertionError,), {})
    raise _failure_types[kind](message)


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
        env = Env(client, rg=RG, vault=VAULT).create()
        assert env.policy_id == POLICY_ID
        r = client.put(f"{PATCH_VAULT}?api-version={API}", json=vault_body())
        assert r.status_code == 201, r.text
        wait_operation(client, r.headers["Azure-AsyncOperation"])
        yield Fuzz(server, client)


@pytest.fixture(autouse=True)
def _alive(fz: Fuzz) -> None:
    fz.revive()


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


KINDS = {"null": type(None), "bool": bool, "int": int, "float": float, "str": str, "list": list, "dict": dict}


def kind_of(value: Any) -> str:
    """The JSON type of ``value`` (bool before int: True is an int in Python)."""
    return next((kind for kind, tp in KINDS.items() if isinstance(value, tp)), "deep")


@dataclass(frozen=True)
class Deep:
    """``segment`` (dict keys and list steps) repeated ``depth`` times around ``leaf``, serialised
    without recursion, so depths near the decoder's and the interpreter's limits can be sent."""

    segment: tuple[str | int, ...]
    depth: int
    leaf: Any


depths = st.one_of(st.integers(2, 64), st.integers(64, 1200))
deep_values = st.builds(
    Deep,
    segment=st.one_of(
        st.tuples(st.sampled_from(["details", "innerError", "embeddedInnerError", "properties", "x"]) | keys),
        st.just((0,)),
        st.tuples(keys, st.just(0)),
    ),
    depth=depths,
    leaf=st.none() | st.just({}) | st.just([]) | st.text(max_size=5),
)


def dumps(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; lone surrogates become invalid UTF-8 (or ``\\udXXX`` escapes when ascii_only)."""
    return _dump(value, ascii_only).encode("utf-8", "surrogatepass")


def _dump(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Deep):
        opening = "".join("[" if isinstance(step, int) else "{" + json.dumps(step, ensure_ascii=ascii_only) + ":"
                          for step in value.segment)  # fmt: skip
        closing = "".join("]" if isinstance(step, int) else "}" for step in reversed(value.segment))
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


MUTATIONS = ["delete", "retype", "rename", "insert", "string", "tweak", "huge", "deep", "deepen"]


@st.composite
def tweaked(draw: st.DrawFn, value: str) -> str:
    """``value`` edited the way format checks trip: each digit run replaced by a random number, or a
    character inserted, or the string truncated or repeated."""
    how = draw(st.sampled_from(["digits", "insert", "truncate", "repeat"]))
    if how == "digits" and re.search(r"\d", value):
        numbers = st.integers(-(10**20), 10**20).map(str) | st.from_regex(r"\A\d{0,20}\Z")
        return re.sub(r"\d+", lambda _: draw(numbers), value)
    if how == "truncate":
        return value[: draw(st.integers(0, len(value)))]
    if how == "repeat":
        return value * draw(st.integers(2, 50))
    at = draw(st.integers(0, len(value)))
    return value[:at] + draw(st.characters()) + value[at:]


@st.composite
def mutated(draw: st.DrawFn, base: Any, text: st.SearchStrategy[str]) -> Any:
    """``base`` after one to four random edits anywhere in its tree."""
    body = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4]))):  # mostly one edit: it gets deepest
        op = draw(st.sampled_from(MUTATIONS))
        paths = [p for p in _paths(body) if not isinstance(_get(body, p), Deep)]
        if not paths:  # the whole body is one Deep value
            break
        if op in ("delete", "rename", "deepen"):
            below_root = [p for p in paths if p and (op != "rename" or isinstance(_get(body, p[:-1]), dict))]
            if not below_root:
                continue
            path = draw(st.sampled_from(below_root))
            if op == "deepen":
                # Repeat a stretch of an existing path (e.g. ``details[0]``) many times: in a recursive
                # schema the result is still valid, just deep.
                i = draw(st.integers(0, len(path) - 1))
                j = draw(st.integers(i + 1, len(path)))
                body = _replace(body, path[:i], Deep(path[i:j], draw(depths), _get(body, path[:j])))
                continue
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
            if op in ("string", "tweak"):  # rather where a string is
                paths = [p for p in paths if isinstance(_get(body, p), str)] or paths
            path = draw(st.sampled_from(paths))
            current = _get(body, path)
            if op == "tweak":
                new = draw(tweaked(current)) if isinstance(current, str) else draw(text)
            elif op == "retype":
                other = draw(st.sampled_from([k for k in KINDS if k != kind_of(current)]))
                new = draw(values_of_kind(other, text))
            else:
                new = draw({"string": text, "huge": _huge, "deep": deep_values}[op])
            body = _replace(body, path, new)
    return body


@st.composite
def payloads(draw: st.DrawFn, bases: list[Any], text: st.SearchStrategy[str]) -> bytes:
    """A request body: eight in ten a mutation of one of the valid ``bases``, else random JSON or bytes."""
    pick = draw(st.integers(0, 9))
    if pick == 9:
        return draw(st.binary(max_size=64))
    document = draw(json_values(text) if pick == 8 else mutated(draw(st.sampled_from(bases)), text))
    return dumps(document, ascii_only=draw(st.booleans()))


JSON_HEADERS = {"Content-Type": "application/json"}


def _ok(r: httpx.Response) -> bool:
    return 200 <= r.status_code < 300


def _follow_up(fz: Fuzz, url: str, r: httpx.Response) -> None:
    """After an accepted write: the resource and its operation still read back without a 5xx."""
    fz.send("GET", url)
    status_url = r.headers.get("Azure-AsyncOperation")
    if status_url:
        fz.send("GET", status_url)


# -- valid bodies the mutations start from: the seed's, and one with every optional part set -----


def _rich_instance(policy_id: str) -> dict[str, Any]:
    """The seed body plus datasource parameters and the read-only status parts a GET returns."""
    body = instance_body(policy_id)
    props = body["properties"]
    props["policyInfo"]["policyParameters"]["backupDatasourceParametersList"] = [
        {"objectType": "BlobBackupDatasourceParameters", "containersList": ["c1", "c2"]},
        {"objectType": "KubernetesClusterBackupDatasourceParameters", "snapshotVolumes": True,
         "includeClusterScopeResources": False, "includedNamespaces": ["ns"], "labelSelectors": ["a=b"]},
    ]  # fmt: skip
    props["protectionStatus"] = {
        "status": "ProtectionConfigured",
        "errorDetails": {"code": "E", "message": "m"},
    }
    props["currentProtectionState"] = "ProtectionConfigured"
    props["protectionErrorDetails"] = {
        "code": "E", "message": "m", "target": "t", "isRetryable": False, "isUserError": True,
        "properties": {"k": "v"}, "recommendedAction": ["retry"], "details": [{"code": "E2", "message": "m2"}],
        "innerError": {"code": "I", "additionalInfo": {"k": "v"}, "embeddedInnerError": {"code": "I2"}},
    }  # fmt: skip
    return body


def _rich_policy() -> dict[str, Any]:
    """The test policy plus criteria, a copy setting, a second retention rule and an ad hoc rule."""
    body = policy_body()
    rules = body["properties"]["policyRules"]
    store = {"objectType": "DataStoreInfoBase", "dataStoreType": "VaultStore"}
    rules[0]["trigger"]["taggingCriteria"].append({
        "isDefault": False, "taggingPriority": 10, "tagInfo": {"tagName": "Weekly"},
        "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfWeek"],
                      "daysOfMonth": [{"date": 1}, {"isLast": True}], "daysOfTheWeek": ["Sunday"],
                      "monthsOfYear": ["January"], "scheduleTimes": ["2021-08-15T06:30:00Z"],
                      "weeksOfTheMonth": ["First"]}],
    })  # fmt: skip
    rules[1]["lifecycles"][0]["targetDataStoreCopySettings"] = [
        {"copyAfter": {"objectType": "CustomCopyOption", "duration": "P7D"},
         "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "ArchiveStore"}},
    ]  # fmt: skip
    rules.append({"objectType": "AzureRetentionRule", "name": "Weekly", "isDefault": False, "lifecycles": [
        {"sourceDataStore": store, "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P12W"}}]})  # fmt: skip
    rules.append({"objectType": "AzureBackupRule", "name": "Adhoc", "dataStore": store, "trigger": {
        "objectType": "AdhocBasedTriggerContext", "taggingCriteria": {"tagInfo": {"tagName": "Default"}}}})  # fmt: skip
    return body


INSTANCE_BASE = instance_body(POLICY_ID)
INSTANCE_BASES = [INSTANCE_BASE, _rich_instance(POLICY_ID)]
VAULT_BASES = [
    vault_body(),
    {**vault_body(), "tags": {"k": "v"}, "identity": {"type": "SystemAssigned"}, "properties": {
        "storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}],
        "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"}},
        "securitySettings": {"softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
                             "immutabilitySettings": {"state": "Disabled"}},
        "featureSettings": {"crossSubscriptionRestoreSettings": {"state": "Enabled"}}}},
]  # fmt: skip
PATCH_BASE = {
    "tags": {"env": "fuzz"},
    "identity": {"type": "SystemAssigned"},
    "properties": VAULT_BASES[1]["properties"],
}
PATCH_BASES = [PATCH_BASE, {"tags": {"k": "v"}}]
POLICY_BASES = [policy_body(), _rich_policy()]
VALIDATE_BASE = {"backupInstance": INSTANCE_BASE["properties"]}
VALIDATE_BASES = [VALIDATE_BASE, {"backupInstance": INSTANCE_BASES[1]["properties"]}]
GROUP_BASE = {"location": "westus", "tags": {"k": "v"}, "managedBy": "someone"}
NAME_CHECK_BASE = {"name": "vault1", "type": "Microsoft.DataProtection/backupVaults"}


# -- (a) the backup-instance PUT body ----------------------------------------------------------


@fuzz(350)
@given(body=payloads(INSTANCE_BASES, strings(VAULT_PATH)))
def test_backup_instance_put_body_mutations(fz: Fuzz, body: bytes) -> None:
    url = f"{VAULT_PATH}/backupInstances/{fz.unique('bi')}?api-version={API}"
    r = fz.send("PUT", url, content=body, headers=JSON_HEADERS)
    if _ok(r):
        _follow_up(fz, url, r)


# -- (b) bodies of the other writes ------------------------------------------------------------


@fuzz(100)
@given(body=payloads(VAULT_BASES, strings()), existing=st.booleans())
def test_vault_put_bodies(fz: Fuzz, body: bytes, existing: bool) -> None:
    vault = VAULT if existing else fz.unique("v")  # an update of the fuzz vault, or a create
    url = f"{vault_path(RG, vault)}?api-version={API}"
    r = fz.send("PUT", url, content=body, headers=JSON_HEADERS)
    if _ok(r):
        _follow_up(fz, url, r)


@fuzz(80)
@given(body=payloads(PATCH_BASES, strings()))
def test_vault_patch_bodies(fz: Fuzz, body: bytes) -> None:
    url = f"{PATCH_VAULT}?api-version={API}"
    if _ok(fz.send("PATCH", url, content=body, headers=JSON_HEADERS)):
        fz.send("GET", url)


@fuzz(200)
@given(body=payloads(POLICY_BASES, strings()))
def test_policy_put_bodies(fz: Fuzz, body: bytes) -> None:
    url = f"{VAULT_PATH}/backupPolicies/{fz.unique('p')}?api-version={API}"
    if _ok(fz.send("PUT", url, content=body, headers=JSON_HEADERS)):
        fz.send("GET", url)


@fuzz(100)
@given(body=payloads(VALIDATE_BASES, strings(VAULT_PATH)))
def test_validate_for_backup_bodies(fz: Fuzz, body: bytes) -> None:
    url = f"{VAULT_PATH}/validateForBackup?api-version={API}"
    r = fz.send("POST", url, content=body, headers=JSON_HEADERS)
    if _ok(r):
        fz.send("GET", r.headers["Location"])


@fuzz(40)
@given(body=payloads([NAME_CHECK_BASE], strings()))
def test_check_name_availability_bodies(fz: Fuzz, body: bytes) -> None:
    url = f"{rg_path(RG)}/{DP}/locations/westus/checkNameAvailability?api-version={API}"
    fz.send("POST", url, content=body, headers=JSON_HEADERS)


@fuzz(60)
@given(body=payloads([GROUP_BASE], strings()), existing=st.booleans())
def test_resource_group_put_bodies(fz: Fuzz, body: bytes, existing: bool) -> None:
    group = f"rg-fuzz-{RUN}-existing" if existing else fz.unique("rg-fuzz")
    url = f"{rg_path(group)}?api-version=2021-04-01"
    if _ok(fz.send("PUT", url, content=body, headers=JSON_HEADERS)):
        fz.send("GET", url)


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
def named_requests(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    """(method, URL, body) with one name of the path random and the others naming the fuzz vault."""
    target = draw(st.sampled_from(sorted(TARGETS)))
    methods, slots = TARGETS[target]
    method = draw(st.sampled_from(methods))
    slot = draw(st.sampled_from(slots))
    random_name = draw(encoded_names())
    if slot == "rg" and method != "GET":
        # writes and deletes of groups with random names stay inside this run's names
        random_name = draw(st.sampled_from([f"{random_name}{RUN}", f"{RUN}{random_name}"]))
    rg = random_name if slot == "rg" else RG
    vault = random_name if slot == "vault" else VAULT
    name = random_name if slot == "name" else f"n-{RUN}-{draw(st.integers(0, 10**9))}"
    g = f"/subscriptions/{SUB}/resourceGroups/{rg}"
    v = f"{g}/{DP}/backupVaults/{vault}"
    path, body = {
        "group": (g, GROUP_BASE),
        "vault": (v, vault_body() if method == "PUT" else {"tags": {"k": "v"}}),
        "policy": (f"{v}/backupPolicies/{name}", policy_body()),
        "instance": (f"{v}/backupInstances/{name}", INSTANCE_BASE),
        "vaults": (f"{g}/{DP}/backupVaults", None),
        "policies": (f"{v}/backupPolicies", None),
        "instances": (f"{v}/backupInstances", None),
        "operationStatus": (f"{v}/operationStatus/{name}", None),
        "operationResults": (f"{v}/operationResults/{name}", None),
        "checkName": (f"{g}/{DP}/locations/westus/checkNameAvailability", NAME_CHECK_BASE),
    }[target]
    api = "2021-04-01" if target == "group" else API
    content = json.dumps(body).encode() if method in ("PUT", "PATCH", "POST") else None
    return method, f"{path}?api-version={api}", content


@fuzz(300)
@given(request=named_requests())
def test_random_names_in_paths(fz: Fuzz, request: tuple[str, str, bytes | None]) -> None:
    method, url, content = request
    fz.send(method, url, content=content, headers=JSON_HEADERS if content is not None else None)


OPERATION_SCOPES = [
    f"/subscriptions/{SUB}/{DP}/locations/westus/operationStatus",
    f"{rg_path(RG)}/{DP}/operationStatus",
    f"{VAULT_PATH}/operationStatus",
    f"/subscriptions/{SUB}/{DP}/locations/westus/operationResults",
    f"{VAULT_PATH}/operationResults",
    f"{VAULT_PATH}/backupInstances/bi/operationResults",
]
operation_ids = encoded_names() | st.binary(max_size=60).map(lambda b: quote(base64.b64encode(b), safe=""))


@fuzz(60)
@given(scope=st.sampled_from(OPERATION_SCOPES), op_id=operation_ids)
def test_random_operation_ids(fz: Fuzz, scope: str, op_id: str) -> None:
    """Operation ids are not names: any text (percent-encoded) at all three status scopes and the results."""
    fz.send("GET", f"{scope}/{op_id}?api-version={API}")


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
    st.sampled_from(["$top", "$skipToken", "$top", "$skipToken", "api-version"]),
    recased(sorted(query_values)),
    st.sampled_from(["$filter", "$expand", "api-version ", "x"]),
    st.text(max_size=8),
)


@st.composite
def queries(draw: st.DrawFn, api: str) -> str:
    """Random parameters; three times in four the route's valid ``api`` somewhere among them."""
    parts = []
    for name in draw(st.lists(query_names, max_size=4)):
        value = draw(query_values.get(name.lower().replace("$skiptoken", "$skipToken"), st.text(max_size=12)))
        if draw(st.integers(0, 9)) == 0:
            parts.append(quote(name, safe=""))  # a name without "="
        else:
            parts.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    if draw(st.integers(0, 3)):
        parts.insert(draw(st.integers(0, len(parts))), f"api-version={api}")
    return "&".join(parts)


PROVIDER_QUERY_PATHS = [
    f"{VAULT_PATH}/backupInstances",
    f"{VAULT_PATH}/backupPolicies",
    f"{rg_path(RG)}/{DP}/backupVaults",
    f"/subscriptions/{SUB}/{DP}/backupVaults",
    VAULT_PATH,
    POLICY_ID,
    f"{VAULT_PATH}/backupInstances/no-such-bi",
    f"/{DP}/operations",
]
QUERY_ROUTES = [(path, API) for path in PROVIDER_QUERY_PATHS] + [
    (f"/subscriptions/{SUB}/resourcegroups", "2021-04-01"),
    (rg_path(RG), "2021-04-01"),
]


@fuzz(300)
@given(data=st.data(), route=st.sampled_from(QUERY_ROUTES))
def test_random_query_strings(fz: Fuzz, data: st.DataObject, route: tuple[str, str]) -> None:
    path, api = route
    r = fz.send("GET", f"{path}?{data.draw(queries(api), label='query')}")
    next_link = r.json().get("nextLink") if r.status_code == 200 else None
    if next_link:
        fz.send("GET", next_link)


# -- (e) header values -------------------------------------------------------------------------

# A header value as HTTP allows it (visible ASCII, obs-text bytes, inner spaces and tabs): anything
# else is refused by the HTTP parser before dpvault sees it, so it is not dpvault's input.
_field_chars = [chr(c) for c in (*range(0x21, 0x7F), *range(0x80, 0x100))] + [" ", "\t"]
field_values = st.text(st.sampled_from(_field_chars), max_size=60).map(lambda s: s.strip(" \t"))
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/json",
    "application/merge-patch+json", "application/json-patch+json", "text/plain", "application/xml",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1", "application/json;;;", ";",
    "application/", "/json", "*/*",
]  # fmt: skip
system_data_json = st.builds(dumps, json_values(st.text(max_size=10)), st.just(True)).map(
    lambda b: b.decode()
)
header_values = {
    "Content-Type": st.sampled_from(CONTENT_TYPES) | recased(["application/json"]) | field_values,
    "Accept": st.sampled_from(["application/json", "*/*", "text/html", "application/xml;q=0.9"])
    | field_values,
    "x-ms-client-request-id": field_values | st.uuids().map(str),
    "x-ms-return-client-request-id": st.sampled_from(["true", "TRUE", "false", "1", ""]) | field_values,
    "x-ms-correlation-request-id": field_values,
    "x-ms-arm-resource-system-data": system_data_json | field_values,
}


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, bytes]:
    chosen = draw(st.lists(st.sampled_from(sorted(header_values)), unique=True, max_size=len(header_values)))
    return {name: draw(header_values[name]).encode("latin-1") for name in chosen}


HEADER_REQUESTS = {  # method: (path, body)
    "GET": (f"{VAULT_PATH}/backupInstances", None),
    "PUT": (f"{VAULT_PATH}/backupInstances/h-{RUN}-", INSTANCE_BASE),  # plus a number: a new instance each
    "POST": (f"{VAULT_PATH}/validateForBackup", VALIDATE_BASE),
    "PATCH": (PATCH_VAULT, {"tags": {"k": "v"}}),
    "DELETE": (f"{VAULT_PATH}/backupInstances/h-{RUN}-", None),
}


@fuzz(150)
@given(headers=header_sets(), method=st.sampled_from(sorted(HEADER_REQUESTS)))
def test_random_header_values(fz: Fuzz, headers: dict[str, bytes], method: str) -> None:
    path, body = HEADER_REQUESTS[method]
    if path.endswith("-"):
        path += str(next(fz.counter))
    content = json.dumps(body).encode() if body is not None else None
    r = fz.send(method, f"{path}?api-version={API}", content=content, headers=headers)
    echo = headers.get("x-ms-client-request-id")
    if echo and headers.get("x-ms-return-client-request-id", b"").lower() == b"true":
        assert (b"x-ms-client-request-id", echo) in [(n.lower(), v) for n, v in r.headers.raw]


# -- inputs the fuzzing found ------------------------------------------------------------------


def _edited(body: dict[str, Any], path: str, value: Any) -> bytes:
    """``body`` (copied) with the dotted ``path`` (list items by index) set to ``value``, as JSON."""
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = body
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[last] = value
    return json.dumps(body).encode()


_DURATION = "properties.policyRules.1.lifecycles.0.deleteAfter.duration"
_DEEP_DETAILS = json.dumps(INSTANCE_BASE)[:-2].encode() + (
    b',"protectionErrorDetails":' + b'{"code":"E","details":[' * 400 + b"{}" + b"]}" * 400 + b"}}"
)
_NUL_POLICY = f"{VAULT_PATH}/backupPolicies/pol\u0000icy"
FOUND = {  # id: (method, path and query, body)
    "top-superscript-two": ("GET", f"{VAULT_PATH}/backupInstances?api-version={API}&$top=%C2%B2", None),
    "top-ethiopic-digit": ("GET", f"/subscriptions/{SUB}/{DP}/backupVaults?api-version={API}&$top=%E1%8D%A9", None),
    "duration-P100000M": ("PUT", "policy", _edited(policy_body(), _DURATION, "P100000M")),
    "duration-PT999999999999H": ("PUT", "policy", _edited(policy_body(), _DURATION, "PT999999999999H")),
    "details-nested-400-deep": ("PUT", "instance", _DEEP_DETAILS),
    "location-65-characters": ("PUT", "vault", _edited(vault_body(), "location", "x" * 65)),
    "location-with-nul": ("PUT", "vault", _edited(vault_body(), "location", "west\u0000us")),
    "operation-status-id-nul": ("GET", f"/subscriptions/{SUB}/{DP}/locations/westus/operationStatus/%00?api-version={API}", None),
    "operation-result-id-nul": ("GET", f"{VAULT_PATH}/operationResults/%00?api-version={API}", None),
    "instance-policy-name-nul": ("PUT", "instance", _edited(INSTANCE_BASE, "properties.policyInfo.policyId", _NUL_POLICY)),
    "validate-policy-name-nul": ("POST", f"{VAULT_PATH}/validateForBackup?api-version={API}",
                                 _edited(VALIDATE_BASE, "backupInstance.policyInfo.policyId", _NUL_POLICY)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FOUND))
def test_inputs_found_by_fuzzing(fz: Fuzz, case: str) -> None:
    """Minimal inputs exploratory runs (and review of what they hit) found answering 500 or hanging,
    replayed on every run; "policy", "vault" and "instance" mean a new resource of the fuzz vault."""
    method, target, content = FOUND[case]
    url = {
        "policy": f"{VAULT_PATH}/backupPolicies/{fz.unique('found')}?api-version={API}",
        "vault": f"{vault_path(RG, fz.unique('found'))}?api-version={API}",
        "instance": f"{VAULT_PATH}/backupInstances/{fz.unique('found')}?api-version={API}",
    }.get(target, target)
    fz.send(method, url, content=content, headers=JSON_HEADERS if content is not None else None)


# -- afterwards --------------------------------------------------------------------------------


def test_the_fuzzed_state_still_reads_and_deletes(fz: Fuzz) -> None:
    """Whatever the fuzzing stored reads back, lists, and deletes without a 5xx (runs last)."""
    lists = [f"{VAULT_PATH}/backupInstances", f"{VAULT_PATH}/backupPolicies"]
    lists += [f"{rg_path(RG)}/{DP}/backupVaults", f"/subscriptions/{SUB}/{DP}/backupVaults"]
    for path in lists:
        url: str | None = f"{path}?api-version={API}&$top=50"
        while url:
            url = fz.send("GET", url).json().get("nextLink")
    fz.send("GET", f"/subscriptions/{SUB}/resourcegroups?api-version=2021-04-01")
    fz.send("DELETE", f"{POLICY_ID}?api-version={API}")  # in use (409): reads every stored instance
    fz.send("DELETE", f"{VAULT_PATH}?api-version={API}")  # not empty (409)
    fz.send("DELETE", f"{rg_path(RG)}?api-version=2021-04-01")  # busy (409), or everything goes (200)
