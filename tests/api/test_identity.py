"""Identity: bearer-token validation, trusted external OpenID issuers (with key rotation), the built-in
Entra-like issuer driven by azure-identity, cloud metadata, tenants owning subscriptions, and secrets
kept out of logs and responses.

Everything runs against real processes: ``dpvault serve`` (``make_server``), and for external tokens
``python -m tests.oidc_issuer`` (a tiny OpenID provider whose private keys the tests hold).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m
from azure.mgmt.resource.resources import ResourceManagementClient
from cryptography.hazmat.primitives import serialization

from tests import oidc_issuer as oidc
from tests.integration.test_protection import Protected, make_sample_database
from tests.support import (
    API,
    SUB,
    PostgresServer,
    Server,
    free_port,
    rg_path,
    vault_body,
    vault_path,
    wait_operation,
)

ROOT = Path(__file__).resolve().parents[2]
TENANT = "00000000-0000-0000-0000-000000000001"  # dpvault's default tenant (`dpvault token`, `clients add`)
OTHER_TENANT = "00000000-0000-0000-0000-0000000000b2"
EXT_TENANT = "7f3c5a1e-0e5b-4c6f-9d2a-5b8e3f1a9c01"  # the external issuer's tenant
EXT_SUB = "5b0d3c1e-7a4f-4e2b-9c8d-0e1f2a3b4c5d"  # a subscription only the external tenant uses
ARM_SCOPE = "https://management.azure.com/.default"
RESOURCES_API = "2022-12-01"
SPEC = ROOT / "tests" / "spec" / "examples"
SEED = SPEC / "BackupInstanceOperations" / "PutBackupInstance.json"
POLICY = SPEC / "PolicyCRUD" / "CreateOrUpdateBackupPolicy.json"
JSON_CT = "application/json; charset=utf-8"


# -- helpers ----------------------------------------------------------------------------------


def cloud_error(r: httpx.Response, status: int, codes: str | set[str]) -> dict[str, Any]:
    """``r`` is the CloudError ``{"error": {"code", "message"}}`` with this status and one of ``codes``."""
    allowed = {codes} if isinstance(codes, str) else codes
    assert r.status_code < 500, f"server error: {r.status_code} {r.text}"
    assert r.status_code == status, r.text
    assert r.headers.get("content-type") == JSON_CT, r.headers
    body = r.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], error
    assert error.get("code") in allowed, error
    if status == 401:
        challenge = r.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, r.headers
    return error


def cli(
    server: Server, *args: str, database: bool = True, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``dpvault ARGS --data-dir D [--database-url U]`` as an operator runs it."""
    cmd = [sys.executable, "-m", "dpvault", *args, "--data-dir", str(server.data_dir)]
    if database and server.database_url:
        cmd += ["--database-url", server.database_url]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


@dataclass
class RegisteredClient:
    client_id: str
    client_secret: str
    tenant_id: str


def add_client(server: Server, name: str, *extra: str) -> RegisteredClient:
    out = cli(server, "clients", "add", name, *extra).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return RegisteredClient(fields["client_id"], fields["client_secret"], fields["tenant_id"])


def own_key(server: Server) -> Any:
    return serialization.load_pem_private_key(
        (server.data_dir / "identity" / "signing-key.pem").read_bytes(), None
    )


def own_kid(server: Server) -> str:
    return jwt.get_unverified_header(server.token())["kid"]


def own_claims(tenant: str = TENANT, **changes: Any) -> dict[str, Any]:
    """Claims as ``dpvault token`` writes them; ``changes`` override (``None`` removes a claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://sts.dpvault.local/{tenant}/", "aud": "https://management.azure.com/",
        "iat": now, "nbf": now, "exp": now + 3600, "tid": tenant, "oid": "c0ffee00-0000-4000-8000-000000000001",
        "sub": "c0ffee00-0000-4000-8000-000000000001", "upn": "tester@dpvault.local", "scp": "user_impersonation",
    }  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def own_signed(server: Server, **changes: Any) -> str:
    """A token signed with the server's own key, naming its kid."""
    return jwt.encode(
        own_claims(**changes), own_key(server), algorithm="RS256", headers={"kid": own_kid(server)}
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(server: Server) -> str:
    """The classic algorithm-confusion token: HMAC keyed with the server's public key PEM."""
    public = (
        own_key(server)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": own_kid(server)}).encode())
    signing_input = f"{header}.{_b64(json.dumps(own_claims()).encode())}"
    return f"{signing_input}.{_b64(hmac.new(public, signing_input.encode(), hashlib.sha256).digest())}"


def alg_none(server: Server) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": own_kid(server)}).encode())
    return f"{header}.{_b64(json.dumps(own_claims()).encode())}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def http(server: Server, token: str | None = None, **kwargs: Any) -> httpx.Client:
    headers = bearer(token) if token else {}
    return httpx.Client(
        base_url=server.base, verify=server.ssl_context(), headers=headers, timeout=30, **kwargs
    )


def create_vault(client: httpx.Client, path: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    body = {**vault_body(), **({"tags": tags} if tags else {})}
    r = client.put(f"{path}?api-version={API}", json=body)
    assert r.status_code in (200, 201), r.text
    if "Azure-AsyncOperation" in r.headers:
        assert wait_operation(client, r.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    got = client.get(f"{path}?api-version={API}")
    assert got.status_code == 200, got.text
    return got.json()


# -- the external issuer (a second process) ---------------------------------------------------


@dataclass
class Issuer:
    """``tests/oidc_issuer.py`` running on ``port``; the test holds its private keys."""

    port: int
    root: Path
    key: Any = field(default_factory=oidc.new_rsa)
    ec_key: Any = field(default_factory=oidc.new_ec)
    next_key: Any = field(default_factory=oidc.new_rsa)
    tenant: str = EXT_TENANT
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def url(self) -> str:
        return oidc.issuer_url(self.port, self.tenant)

    @property
    def marker(self) -> Path:
        return self.root / "publish-next-key"

    def start(self) -> Issuer:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "tests.oidc_issuer", "--port", str(self.port),
            "--key-file", str(oidc.write_key(self.root / "key.pem", self.key)),
            "--ec-key-file", str(oidc.write_key(self.root / "ec-key.pem", self.ec_key)),
            "--next-key-file", str(oidc.write_key(self.root / "next-key.pem", self.next_key)),
            "--next-key-marker", str(self.marker),
        ]  # fmt: skip
        self.log = open(self.root / "issuer.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "issuer.log").read_text()
            try:
                if httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the OpenID issuer did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.log is not None:
            self.log.close()

    def token(self, key: Any = None, **changes: Any) -> str:
        return oidc.mint(self.key if key is None else key, self.url, self.tenant, **changes)

    def stats(self) -> dict[str, int]:
        return httpx.get(f"http://127.0.0.1:{self.port}/_stats", timeout=5).json()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    started = Issuer(free_port(), tmp_path_factory.mktemp("oidc")).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def trusting(make_server: Callable[..., Server], issuer: Issuer) -> Server:
    """A dpvault that trusts the external issuer (and its own key); SUB is the default tenant's."""
    server = make_server("--trust-issuer", issuer.url)
    with http(server, server.token()) as c:
        r = c.put(f"{rg_path('rg-auth')}?api-version={RESOURCES_API}", json={"location": "westus"})
        assert r.status_code in (200, 201), r.text
    return server


class IssuerCredential:
    """A TokenCredential minting tokens from the external issuer (``key`` defaults to its RSA key)."""

    def __init__(self, issuer: Issuer, key: Any = None, **changes: Any) -> None:
        self.issuer, self.key, self.changes = issuer, key, changes
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        token = self.issuer.token(self.key, **self.changes)
        return AccessToken(token, jwt.decode(token, options={"verify_signature": False})["exp"])


def storage() -> list[m.StorageSetting]:
    return [m.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")]


# -- 1. bad tokens ----------------------------------------------------------------------------

Maker = Callable[[Server, Issuer], str | None]


def _ext(issuer: Issuer, key: Any = None, **changes: Any) -> str:
    return "Bearer " + issuer.token(key, **changes)


BAD_TOKENS: list[Any] = [
    # (id, Authorization header maker, status, error code(s))
    ("missing-header", lambda s, i: None, 401, "AuthenticationFailed"),
    ("wrong-scheme", lambda s, i: "Basic dXNlcjpwYXNzd29yZA==", 401, "AuthenticationFailed"),
    ("wrong-scheme-own-token", lambda s, i: "Token " + s.token(), 401, "AuthenticationFailed"),
    ("empty-bearer", lambda s, i: "Bearer", 401, "AuthenticationFailed"),
    ("garbage", lambda s, i: "Bearer this-is-not-a-jwt", 401, "InvalidAuthenticationToken"),
    ("garbage-three-parts", lambda s, i: "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", 401,
     {"InvalidAuthenticationToken", "InvalidAuthenticationTokenIssuer"}),
    ("expired-cli", lambda s, i: "Bearer " + s.token("--lifetime", "-3600"), 401, "ExpiredAuthenticationToken"),
    ("expired-app-cli", lambda s, i: "Bearer " + s.token("--application", "--lifetime", "-3600"), 401,
     "ExpiredAuthenticationToken"),
    ("expired-beyond-leeway", lambda s, i: "Bearer " + own_signed(s, iat=int(time.time()) - 600,
     nbf=int(time.time()) - 600, exp=int(time.time()) - 120), 401, "ExpiredAuthenticationToken"),
    ("not-yet-valid", lambda s, i: "Bearer " + own_signed(s, nbf=int(time.time()) + 600), 401,
     "InvalidAuthenticationToken"),
    ("wrong-audience", lambda s, i: "Bearer " + own_signed(s, aud="https://vault.azure.net/"), 401,
     "InvalidAuthenticationToken"),
    ("no-audience", lambda s, i: "Bearer " + own_signed(s, aud=None), 401, "InvalidAuthenticationToken"),
    ("no-expiry", lambda s, i: "Bearer " + own_signed(s, exp=None), 401, "InvalidAuthenticationToken"),
    ("wrong-issuer-own-key", lambda s, i: "Bearer " + own_signed(s, iss=f"https://sts.windows.net/{TENANT}/"), 401,
     "InvalidAuthenticationToken"),
    ("unknown-issuer", lambda s, i: "Bearer " + jwt.encode(own_claims(iss="https://evil.example/"), oidc.new_rsa(),
     algorithm="RS256"), 401, "InvalidAuthenticationTokenIssuer"),
    ("untrusted-key-server-kid", lambda s, i: "Bearer " + jwt.encode(own_claims(), oidc.new_rsa(), algorithm="RS256",
     headers={"kid": own_kid(s)}), 401, "InvalidAuthenticationToken"),
    ("untrusted-key-unknown-kid", lambda s, i: "Bearer " + jwt.encode(own_claims(), oidc.new_rsa(), algorithm="RS256",
     headers={"kid": "no-such-kid"}), 401, {"InvalidAuthenticationToken", "InvalidAuthenticationTokenIssuer"}),
    ("untrusted-key-no-kid", lambda s, i: "Bearer " + jwt.encode(own_claims(), oidc.new_rsa(), algorithm="RS256"),
     401, "InvalidAuthenticationToken"),
    pytest.param("es256-untrusted-key-server-kid", lambda s, i: "Bearer " + jwt.encode(own_claims(), oidc.new_ec(),
                 algorithm="ES256", headers={"kid": own_kid(s)}), 401, "InvalidAuthenticationToken",
                 id="es256-untrusted-key-server-kid"),
    ("alg-none", lambda s, i: "Bearer " + alg_none(s), 401, "InvalidAuthenticationToken"),
    ("hs256-public-key", lambda s, i: "Bearer " + hs256_with_public_key(s), 401, "InvalidAuthenticationToken"),
    ("missing-scope", lambda s, i: "Bearer " + own_signed(s, scp="openid profile"), 401,
     "InvalidAuthenticationToken"),
    ("app-only-without-roles-or-idtyp", lambda s, i: "Bearer " + own_signed(s, scp=None, upn=None,
     appid="a0a0a0a0-0000-4000-8000-000000000001"), 401, "InvalidAuthenticationToken"),
    ("no-tenant", lambda s, i: "Bearer " + own_signed(s, tid=None), 401, "InvalidAuthenticationToken"),
    ("external-wrong-key", lambda s, i: _ext(i, oidc.new_rsa(), kid=oidc.kid_of(i.key)), 401,
     "InvalidAuthenticationToken"),
    ("external-unknown-kid", lambda s, i: _ext(i, oidc.new_rsa()), 401, "InvalidAuthenticationToken"),
    ("external-signed-with-server-key", lambda s, i: _ext(i, own_key(s), kid=oidc.kid_of(i.key)), 401,
     "InvalidAuthenticationToken"),
    ("external-wrong-audience", lambda s, i: _ext(i, aud="https://graph.microsoft.com/"), 401,
     "InvalidAuthenticationToken"),
    ("external-expired", lambda s, i: _ext(i, iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200,
     exp=int(time.time()) - 3600), 401, "ExpiredAuthenticationToken"),
    ("external-missing-scope", lambda s, i: _ext(i, scp="email"), 401, "InvalidAuthenticationToken"),
    pytest.param("external-rs256-naming-ec-kid", lambda s, i: _ext(i, oidc.new_rsa(), kid=oidc.kid_of(i.ec_key)),
                 401, "InvalidAuthenticationToken", id="external-rs256-naming-ec-kid"),
    pytest.param("external-claims-another-tenant", lambda s, i: _ext(i, tid=TENANT), 401,
                 {"InvalidAuthenticationToken"}, id="external-claims-another-tenant"),
    ("other-tenant", lambda s, i: "Bearer " + s.token("--tenant", OTHER_TENANT), 403, "AuthorizationFailed"),
    ("other-tenant-app", lambda s, i: "Bearer " + s.token("--tenant", OTHER_TENANT, "--application"), 403,
     "AuthorizationFailed"),
]  # fmt: skip


def _case(entry: Any) -> Any:
    return (
        entry if hasattr(entry, "values") and hasattr(entry, "marks") else pytest.param(*entry, id=entry[0])
    )


class TestBadTokens:
    """Each bad token, sent as the PUT of a new vault in the default tenant's subscription, is refused
    (401 with a CloudError and a WWW-Authenticate challenge, or 403 for another tenant) and creates nothing."""

    @pytest.mark.parametrize(("case", "make", "status", "codes"), [_case(e) for e in BAD_TOKENS])
    def test_put_with_bad_token_is_refused_and_creates_nothing(
        self, trusting: Server, issuer: Issuer, case: str, make: Maker, status: int, codes: Any
    ) -> None:
        assert len(BAD_TOKENS) >= 12
        authorization = make(trusting, issuer)
        headers = {} if authorization is None else {"Authorization": authorization}
        path = vault_path("rg-auth", f"bad-{case}")
        r = httpx.put(
            f"{trusting.base}{path}?api-version={API}", json=vault_body(), headers=headers,
            verify=trusting.ssl_context(), timeout=30,
        )  # fmt: skip
        cloud_error(r, status, codes)
        with http(trusting, trusting.token()) as good:
            after = good.get(f"{path}?api-version={API}")
            assert after.status_code == 404, after.text
            listed = good.get(
                f"{rg_path('rg-auth')}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
            )
            assert listed.status_code == 200 and f"bad-{case}" not in listed.text

    def test_the_same_tokens_fail_on_reads_too(self, trusting: Server) -> None:
        url = f"{trusting.base}/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        for authorization in ("Bearer garbage", "Bearer " + trusting.token("--lifetime", "-3600"), None):
            headers = {} if authorization is None else {"Authorization": authorization}
            r = httpx.get(url, headers=headers, verify=trusting.ssl_context())
            cloud_error(
                r, 401, {"AuthenticationFailed", "InvalidAuthenticationToken", "ExpiredAuthenticationToken"}
            )

    def test_good_tokens_of_every_kind_are_accepted(self, trusting: Server, issuer: Issuer) -> None:
        """The control group: the same request with each accepted kind of token succeeds."""
        url = f"/subscriptions/{EXT_SUB}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        for token in (issuer.token(), issuer.token(issuer.ec_key), issuer.token(scp=None, upn=None, idtyp="app"),
                      issuer.token(scp=None, upn=None, roles=["Backup.Operator"])):  # fmt: skip
            with http(trusting, token) as c:
                r = c.get(url)
                assert r.status_code == 200, r.text
        for token in (trusting.token(), trusting.token("--application"), own_signed(trusting)):
            with http(trusting, token) as c:
                assert (
                    c.get(f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES_API}").status_code
                    == 200
                )


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": 10**400}, id="exp-beyond-float"),
        pytest.param({"exp": 1e308}, id="exp-huge-float"),
        pytest.param({"iat": 10**400}, id="iat-beyond-float"),
        pytest.param({"nbf": -(10**400)}, id="nbf-beyond-float"),
        pytest.param({"exp": True}, id="exp-boolean"),
        pytest.param({"tid": {"id": TENANT}}, id="tid-object"),
        pytest.param({"scp": ["user_impersonation"]}, id="scp-list"),
        pytest.param({"aud": ["https://vault.azure.net/"]}, id="aud-list-wrong"),
    ],
)
def test_odd_claims_in_a_validly_signed_token_never_500(trusting: Server, changes: dict[str, Any]) -> None:
    """Claims only a key holder can set, but still input: each is accepted or refused, never a 500."""
    with http(trusting, own_signed(trusting, **changes)) as c:
        r = c.get(f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES_API}")
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        cloud_error(
            r,
            r.status_code,
            {"InvalidAuthenticationToken", "ExpiredAuthenticationToken", "AuthorizationFailed"},
        )


# -- 2. an external OpenID issuer, through the official SDK -----------------------------------


class TestExternalIssuer:
    def test_sdk_creates_and_lists_a_vault_with_external_tokens(
        self, trusting: Server, issuer: Issuer
    ) -> None:
        credential = IssuerCredential(issuer)
        rg = f"ext-rg-{uuid.uuid4().hex[:6]}"
        name = f"ext-vault-{uuid.uuid4().hex[:6]}"
        resources = ResourceManagementClient(
            credential, EXT_SUB, base_url=trusting.base, connection_verify=trusting.ca
        )
        assert resources.resource_groups.create_or_update(rg, {"location": "westus"}).name == rg
        client = DataProtectionMgmtClient(
            credential, EXT_SUB, base_url=trusting.base, connection_verify=trusting.ca
        )
        created = client.backup_vaults.begin_create_or_update(
            rg,
            name,
            m.BackupVaultResource(location="westus", properties=m.BackupVault(storage_settings=storage())),
            polling_interval=0,
        ).result()  # the SDK's default api-version
        assert created.name == name and created.properties.provisioning_state == "Succeeded"
        if created.system_data is not None:
            assert created.system_data.created_by == "alice@external.test"
        assert name in [v.name for v in client.backup_vaults.get_in_resource_group(rg)]
        assert name in [v.name for v in client.backup_vaults.get_in_subscription()]
        assert credential.scopes and all(s == (ARM_SCOPE,) for s in credential.scopes)
        assert issuer.stats()["jwks"] >= 1
        # ES256 tokens from the same issuer (its EC P-256 key) work too
        ec_client = DataProtectionMgmtClient(
            IssuerCredential(issuer, issuer.ec_key),
            EXT_SUB,
            base_url=trusting.base,
            connection_verify=trusting.ca,
        )
        assert ec_client.backup_vaults.get(rg, name).id == created.id
        # the subscription now belongs to the external tenant: a dpvault token of the default tenant is refused
        default = DataProtectionMgmtClient(
            _StaticCredential(trusting.token()),
            EXT_SUB,
            base_url=trusting.base,
            connection_verify=trusting.ca,
        )
        with pytest.raises(HttpResponseError) as raised:
            default.backup_vaults.get(rg, name)
        assert raised.value.status_code == 403 and raised.value.error.code == "AuthorizationFailed"

    def test_external_subscription_is_listed_for_its_tenant(self, trusting: Server, issuer: Issuer) -> None:
        with http(trusting, issuer.token()) as c:
            c.get(f"/subscriptions/{EXT_SUB}/resourcegroups?api-version={RESOURCES_API}")
            r = c.get(f"/subscriptions?api-version={RESOURCES_API}")
            assert r.status_code == 200, r.text
            subs = r.json()["value"]
            assert {s["subscriptionId"] for s in subs} == {EXT_SUB}
            assert all(s["tenantId"] == EXT_TENANT for s in subs)


class _StaticCredential:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def rotating(
    make_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Issuer]]:
    """A fresh issuer (its next key not yet published) and a dpvault trusting it that has fetched its JWKS."""
    fresh = Issuer(free_port(), tmp_path_factory.mktemp("oidc-rotation")).start()
    server = make_server("--trust-issuer", fresh.url)
    with http(server, fresh.token()) as c:
        assert (
            c.get(f"/subscriptions/{EXT_SUB}/resourcegroups?api-version={RESOURCES_API}").status_code == 200
        )
    assert fresh.stats()["jwks"] == 1
    yield server, fresh
    fresh.stop()


def _list_with(server: Server, token: str) -> httpx.Response:
    with http(server, token) as c:
        return c.get(
            f"/subscriptions/{EXT_SUB}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        )


class TestKeyRotation:
    """The issuer starts signing with a new key that appears in its JWKS only after rotation: dpvault
    refetches the JWKS when a token names an unknown kid."""

    def test_rotated_key_is_accepted_once_published_and_the_refresh_cooldown_passed(
        self, rotating: tuple[Server, Issuer]
    ) -> None:
        server, issuer = rotating
        rotated = issuer.token(issuer.next_key)
        cloud_error(_list_with(server, rotated), 401, "InvalidAuthenticationToken")  # not published yet
        issuer.marker.touch()
        time.sleep(2.2)  # an unknown kid refetches the JWKS at most every 2 s (refreshCooldown)
        rotated = issuer.token(issuer.next_key)  # a new token: a refused one may be remembered
        r = _list_with(server, rotated)
        assert r.status_code == 200, r.text
        assert issuer.stats()["jwks"] >= 2
        assert _list_with(server, issuer.token()).status_code == 200  # the old key still works

    def test_rotated_key_is_accepted_after_a_refetch(self, rotating: tuple[Server, Issuer]) -> None:
        server, issuer = rotating
        cloud_error(_list_with(server, issuer.token(issuer.next_key)), 401, "InvalidAuthenticationToken")
        issuer.marker.touch()
        fetches = issuer.stats()["jwks"]
        deadline = time.monotonic() + 45  # PyJWT's refetch cooldown is 30 s
        while True:
            r = _list_with(server, issuer.token(issuer.next_key))
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            cloud_error(r, 401, "InvalidAuthenticationToken")
            time.sleep(1)
        assert r.status_code == 200, r.text
        assert issuer.stats()["jwks"] > fetches  # accepted because dpvault fetched the JWKS again
        assert _list_with(server, issuer.token()).status_code == 200


def test_no_builtin_issuer_trusts_only_external_tokens(
    make_server: Callable[..., Server], issuer: Issuer
) -> None:
    """``--no-builtin-issuer``: no token endpoint, no discovery, and ``dpvault token`` tokens are refused."""
    server = make_server("--no-builtin-issuer", "--trust-issuer", issuer.url)
    local = Server.token(server)  # the CLI's, signed with the server's key, before token() is redirected
    server.token = lambda *extra: issuer.token()  # type: ignore[method-assign]
    with http(server) as anonymous:
        for path in ("/common/v2.0/.well-known/openid-configuration", "/common/discovery/v2.0/keys"):
            cloud_error(anonymous.get(path), 401, "AuthenticationFailed")
        cloud_error(anonymous.post(f"/{TENANT}/oauth2/v2.0/token", data={"grant_type": "client_credentials"}),
                    401, "AuthenticationFailed")  # fmt: skip
        r = anonymous.get("/metadata/endpoints?api-version=2022-09-01")
        assert r.status_code == 200 and r.json()["resourceManager"] == server.base + "/"
    cloud_error(
        _list_with(server, local), 401, {"InvalidAuthenticationToken", "InvalidAuthenticationTokenIssuer"}
    )
    assert _list_with(server, issuer.token()).status_code == 200


# -- 3. the built-in issuer, through azure-identity -------------------------------------------


def _seed_body(policy_id: str) -> dict[str, Any]:
    body = json.loads(SEED.read_text())["parameters"]["parameters"]
    body["properties"]["policyInfo"]["policyId"] = policy_id
    return body


def sdk_flow(server: Server, credential: Any, sub: str = SUB) -> None:
    """tests/e2e/test_sdk.py's flow: resource group, vault, policy, the seed backup instance."""
    rg = f"id-rg-{uuid.uuid4().hex[:6]}"
    vault_name = f"id-vault-{uuid.uuid4().hex[:6]}"
    resources = ResourceManagementClient(credential, sub, base_url=server.base, connection_verify=server.ca)
    assert resources.resource_groups.create_or_update(rg, {"location": "westus"}).name == rg
    assert resources.resource_groups.check_existence(rg)
    client = DataProtectionMgmtClient(credential, sub, base_url=server.base, connection_verify=server.ca)
    vault = client.backup_vaults.begin_create_or_update(
        rg, vault_name,
        m.BackupVaultResource(location="westus", properties=m.BackupVault(storage_settings=storage())),
        polling_interval=0,
    ).result()  # fmt: skip
    assert vault.properties.provisioning_state == "Succeeded"
    policy_body = json.loads(POLICY.read_text())["parameters"]["parameters"]
    policy_body["properties"]["datasourceTypes"] = ["Microsoft.DBforPostgreSQL/servers/databases"]
    policy = client.backup_policies.create_or_update(rg, vault_name, "OSSDBPolicy", policy_body)
    assert policy.name == "OSSDBPolicy"
    instance = client.backup_instances.begin_create_or_update(
        rg, vault_name, "testInstance1", _seed_body(policy.id), polling_interval=0
    ).result()
    assert instance.properties.provisioning_state == "Succeeded"
    assert instance.properties.current_protection_state == "ProtectionConfigured"
    assert client.backup_instances.get(rg, vault_name, "testInstance1").id == instance.id
    assert "testInstance1" in [bi.name for bi in client.backup_instances.list(rg, vault_name)]
    client.backup_instances.begin_delete(rg, vault_name, "testInstance1", polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        client.backup_instances.get(rg, vault_name, "testInstance1")


@pytest.fixture(scope="module")
def registered(server: Server) -> RegisteredClient:
    return add_client(server, "identity-tests")


class TestBuiltinIssuer:
    def test_client_secret_credential_drives_the_sdk(
        self, server: Server, registered: RegisteredClient
    ) -> None:
        assert registered.tenant_id == TENANT and uuid.UUID(registered.client_id)
        credential = ClientSecretCredential(
            registered.tenant_id, registered.client_id, registered.client_secret,
            authority=server.base, disable_instance_discovery=True, connection_verify=server.ca,
        )  # fmt: skip
        token = credential.get_token(ARM_SCOPE)
        assert token.expires_on > time.time() + 600
        claims = jwt.decode(token.token, options={"verify_signature": False})
        assert claims["iss"] == f"{server.base}/{TENANT}/v2.0"
        assert claims["tid"] == TENANT and claims["appid"] == registered.client_id
        assert claims["aud"] == "https://management.azure.com/" and claims["idtyp"] == "app"
        # the token verifies against the JWKS the discovery document names
        with http(server) as anonymous:
            config = anonymous.get(f"/{TENANT}/v2.0/.well-known/openid-configuration").json()
            jwks = anonymous.get(config["jwks_uri"].removeprefix(server.base)).json()
        assert config["issuer"] == claims["iss"]
        key = next(k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(token.token)["kid"])
        jwt.decode(
            token.token,
            jwt.PyJWK(key).key,
            algorithms=["RS256"],
            audience=claims["aud"],
            issuer=config["issuer"],
        )
        sdk_flow(server, credential)

    def test_adfs_authority_without_instance_discovery_flag(
        self, server: Server, registered: RegisteredClient
    ) -> None:
        credential = ClientSecretCredential(
            "adfs",
            registered.client_id,
            registered.client_secret,
            authority=server.base,
            connection_verify=server.ca,
        )
        claims = jwt.decode(credential.get_token(ARM_SCOPE).token, options={"verify_signature": False})
        assert claims["tid"] == TENANT and claims["appid"] == registered.client_id
        sdk_flow(server, credential)

    def test_v1_token_endpoint_with_resource(self, server: Server, registered: RegisteredClient) -> None:
        with http(server) as anonymous:
            r = anonymous.post(f"/{TENANT}/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": registered.client_id,
                "client_secret": registered.client_secret, "resource": "https://management.core.windows.net/",
            })  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "Bearer" and body["resource"] == "https://management.core.windows.net/"
        with http(server, body["access_token"]) as c:
            assert (
                c.get(f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES_API}").status_code == 200
            )

    def _token(self, server: Server, tenant: str = TENANT, **form: str) -> httpx.Response:
        with http(server) as anonymous:
            return anonymous.post(f"/{tenant}/oauth2/v2.0/token", data=form)

    def _oauth_error(self, r: httpx.Response, status: int, error: str) -> dict[str, Any]:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["error"] == error and body["error_description"], body
        return body

    def test_wrong_secret_is_invalid_client(self, server: Server, registered: RegisteredClient) -> None:
        wrong = registered.client_secret[:-4] + "AAAA"
        r = self._token(server, grant_type="client_credentials", client_id=registered.client_id,
                        client_secret=wrong, scope=ARM_SCOPE)  # fmt: skip
        body = self._oauth_error(r, 401, "invalid_client")
        assert "access_token" not in body and wrong not in r.text and registered.client_secret not in r.text
        unknown = self._token(server, grant_type="client_credentials", client_id=str(uuid.uuid4()),
                              client_secret=registered.client_secret, scope=ARM_SCOPE)  # fmt: skip
        self._oauth_error(unknown, 401, "invalid_client")
        credential = ClientSecretCredential(
            TENANT, registered.client_id, wrong, authority=server.base, disable_instance_discovery=True,
            connection_verify=server.ca,
        )  # fmt: skip
        with pytest.raises(ClientAuthenticationError, match=r"invalid_client|AADSTS7000215"):
            credential.get_token(ARM_SCOPE)

    def test_wrong_grant_type(self, server: Server, registered: RegisteredClient) -> None:
        r = self._token(server, grant_type="password", client_id=registered.client_id,
                        client_secret=registered.client_secret, scope=ARM_SCOPE, username="u", password="p")  # fmt: skip
        self._oauth_error(r, 400, "unsupported_grant_type")

    def test_bad_scope(self, server: Server, registered: RegisteredClient) -> None:
        for scope in (
            "https://graph.microsoft.com/.default",
            "https://management.azure.com/user_impersonation",
            "",
        ):
            r = self._token(server, grant_type="client_credentials", client_id=registered.client_id,
                            client_secret=registered.client_secret, scope=scope)  # fmt: skip
            self._oauth_error(r, 400, "invalid_scope")

    def test_client_of_another_tenant(self, server: Server) -> None:
        other = add_client(server, "other-tenant-client", "--tenant", OTHER_TENANT)
        r = self._token(server, TENANT, grant_type="client_credentials", client_id=other.client_id,
                        client_secret=other.client_secret, scope=ARM_SCOPE)  # fmt: skip
        self._oauth_error(r, 400, "unauthorized_client")
        ok = self._token(server, OTHER_TENANT, grant_type="client_credentials", client_id=other.client_id,
                         client_secret=other.client_secret, scope=ARM_SCOPE)  # fmt: skip
        assert ok.status_code == 200, ok.text
        # its token is of the other tenant: the default tenant's subscription is not its own
        with http(server, ok.json()["access_token"]) as c:
            cloud_error(c.get(f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES_API}"), 403,
                        "AuthorizationFailed")  # fmt: skip

    def test_identity_endpoints_answer_without_authorization(self, server: Server) -> None:
        with http(server) as anonymous:
            config = anonymous.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")
            assert config.status_code == 200, config.text
            assert config.json()["token_endpoint"] == f"{server.base}/{TENANT}/oauth2/v2.0/token"
            assert anonymous.get(f"/{TENANT}/.well-known/openid-configuration").status_code == 200
            for path in (f"/{TENANT}/discovery/v2.0/keys", "/common/discovery/keys"):
                keys = anonymous.get(path)
                assert keys.status_code == 200 and keys.json()["keys"][0]["kid"] == own_kid(server), keys.text
            assert anonymous.get("/common/discovery/instance?api-version=1.1").status_code == 200
            assert anonymous.get("/metadata/endpoints?api-version=2022-09-01").status_code == 200
            token = anonymous.post(f"/{TENANT}/oauth2/v2.0/token", data={"grant_type": "client_credentials"})
            self._oauth_error(token, 400, "invalid_request")  # reached: no bearer token was asked for

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/subscriptions?api-version=2022-12-01"),
            ("GET", f"/subscriptions/{SUB}?api-version=2022-12-01"),
            ("GET", f"/subscriptions/{SUB}/resourcegroups?api-version=2022-12-01"),
            ("PUT", f"{rg_path('anon-rg')}?api-version=2022-12-01"),
            ("GET", f"/providers/Microsoft.DataProtection/operations?api-version={API}"),
            (
                "GET",
                f"/subscriptions/{SUB}/providers/Microsoft.DataProtection/backupVaults?api-version={API}",
            ),
            ("PUT", f"{vault_path('anon-rg', 'anon-vault')}?api-version={API}"),
            ("DELETE", f"{vault_path('anon-rg', 'anon-vault')}?api-version={API}"),
            ("GET", f"{vault_path('anon-rg', 'anon-vault')}/backupPolicies?api-version={API}"),
            ("POST", f"{vault_path('anon-rg', 'anon-vault')}/backupInstances/bi/backup?api-version={API}"),
            ("GET", "/dpvault/clock"),
            ("GET", f"/subscriptions/{SUB}/noSuchThing?api-version={API}"),
        ],
    )
    def test_arm_routes_still_require_a_token(self, server: Server, method: str, path: str) -> None:
        with http(server) as anonymous:
            r = anonymous.request(method, path, json={} if method in ("PUT", "POST") else None)
        cloud_error(r, 401, "AuthenticationFailed")


# -- 4. cloud metadata ------------------------------------------------------------------------


class TestMetadata:
    def test_2022_09_01_is_one_cloud_object(self, server: Server) -> None:
        root = server.base + "/"
        with http(server) as anonymous:
            r = anonymous.get("/metadata/endpoints?api-version=2022-09-01")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["name"] and doc["resourceManager"] == root and doc["microsoftGraphResourceId"] == root
        auth = doc["authentication"]
        assert (
            auth["loginEndpoint"] == server.base
            and auth["tenant"] == "common"
            and auth["identityProvider"] == "AAD"
        )
        assert "https://management.azure.com/" in auth["audiences"] and root in auth["audiences"]
        assert doc["suffixes"]["storage"] and doc["suffixes"]["keyvaultDns"]
        assert doc["resourceManager"].startswith("https://")

    def test_2019_05_01_is_an_array(self, server: Server) -> None:
        with http(server) as anonymous:
            doc = anonymous.get("/metadata/endpoints?api-version=2019-05-01").json()
        assert isinstance(doc, list) and len(doc) == 1
        assert (
            doc[0]["resourceManager"] == server.base + "/"
            and doc[0]["authentication"]["loginEndpoint"] == server.base
        )

    def test_2015_01_01_is_the_old_shape(self, server: Server) -> None:
        root = server.base + "/"
        with http(server) as anonymous:
            doc = anonymous.get("/metadata/endpoints?api-version=2015-01-01").json()
        assert isinstance(doc, dict) and "resourceManager" not in doc
        assert {"galleryEndpoint", "graphEndpoint", "portalEndpoint", "authentication"} <= set(doc)
        assert doc["galleryEndpoint"] == doc["graphEndpoint"] == doc["portalEndpoint"] == root
        assert doc["authentication"]["loginEndpoint"] == server.base and doc["authentication"]["audiences"]

    def test_host_used_is_reflected(self, server: Server) -> None:
        r = httpx.get(f"https://localhost:{server.port}/metadata/endpoints?api-version=2022-09-01",
                      verify=server.ssl_context())  # fmt: skip
        assert r.json()["resourceManager"] == f"https://localhost:{server.port}/"


# -- 5. tenants own subscriptions -------------------------------------------------------------


def _new_tenant() -> str:
    return str(uuid.uuid4())


class TestTenants:
    def test_first_use_claims_the_subscription_for_the_caller_tenant(self, server: Server) -> None:
        tenant_a, tenant_b, sub = _new_tenant(), _new_tenant(), str(uuid.uuid4())
        a, b = server.token("--tenant", tenant_a), server.token("--tenant", tenant_b)
        path = vault_path("rg-a", "vault-of-a", sub)
        with http(server, a) as ca:
            created = create_vault(ca, path, tags={"owner": "tenant-a-secret-tag"})
            assert created["name"] == "vault-of-a"
        list_sub = f"/subscriptions/{sub}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        list_rg = f"{rg_path('rg-a', sub)}/providers/Microsoft.DataProtection/backupVaults?api-version={API}"
        with http(server, b) as cb:
            responses = [
                cb.get(f"{path}?api-version={API}"),
                cb.put(f"{path}?api-version={API}", json=vault_body()),
                cb.put(f"{vault_path('rg-a', 'vault-of-b', sub)}?api-version={API}", json=vault_body()),
                cb.delete(f"{path}?api-version={API}"),
                cb.get(list_sub),
                cb.get(list_rg),
                cb.get(f"{rg_path('rg-a', sub)}?api-version={RESOURCES_API}"),
                cb.get(f"/subscriptions/{sub}/resourcegroups?api-version={RESOURCES_API}"),
                cb.get(f"/subscriptions/{sub}?api-version={RESOURCES_API}"),
            ]
            app_b = server.token("--tenant", tenant_b, "--application")
            responses.append(cb.get(list_sub, headers=bearer(app_b)))
            # dpvault's own routes: a drill names its subscription in the body; the clock is the
            # server's and only its own tenant may move it.
            point = f"{path}/backupInstances/bi/recoveryPoints/{uuid.uuid4().hex}"
            responses.append(cb.post("/dpvault/restoreDrills", json={"recoveryPointId": point}))
            responses.append(cb.post("/dpvault/clock/advance", json={"seconds": 1}))
        for r in responses:
            cloud_error(r, 403, "AuthorizationFailed")
            assert "tenant-a-secret-tag" not in r.text and "vault-of-a" not in r.text
        with http(server, a) as ca:
            got = ca.get(f"{path}?api-version={API}")
            assert got.status_code == 200 and got.json()["tags"] == {"owner": "tenant-a-secret-tag"}
            assert [v["name"] for v in ca.get(list_sub).json()["value"]] == ["vault-of-a"]
            assert ca.get(f"{vault_path('rg-a', 'vault-of-b', sub)}?api-version={API}").status_code == 404

    def test_subscriptions_list_and_get_show_only_the_caller_tenant(self, server: Server) -> None:
        tenant_a, tenant_b = _new_tenant(), _new_tenant()
        subs_a, sub_b = sorted(str(uuid.uuid4()) for _ in range(2)), str(uuid.uuid4())
        a, b = server.token("--tenant", tenant_a), server.token("--tenant", tenant_b)
        for sub, token in [*((s, a) for s in subs_a), (sub_b, b)]:
            with http(server, token) as c:
                assert (
                    c.get(f"/subscriptions/{sub}/resourcegroups?api-version={RESOURCES_API}").status_code
                    == 200
                )
        with http(server, a) as ca:
            listed = ca.get(f"/subscriptions?api-version={RESOURCES_API}")
            assert listed.status_code == 200, listed.text
            value = listed.json()["value"]
            assert sorted(s["subscriptionId"] for s in value) == subs_a
            assert all(
                s["tenantId"] == tenant_a and s["id"] == f"/subscriptions/{s['subscriptionId']}"
                for s in value
            )
            assert sub_b not in listed.text and SUB not in listed.text
            one = ca.get(f"/subscriptions/{subs_a[0]}?api-version={RESOURCES_API}")
            assert one.status_code == 200, one.text
            body = one.json()
            assert body["subscriptionId"] == subs_a[0] and body["tenantId"] == tenant_a
            assert body["state"] == "Enabled" and body["displayName"]
            cloud_error(
                ca.get(f"/subscriptions/{sub_b}?api-version={RESOURCES_API}"), 403, "AuthorizationFailed"
            )
            cloud_error(ca.get("/subscriptions?api-version=1999-01-01"), 400, "InvalidApiVersionParameter")
        with http(server, b) as cb:
            value = cb.get(f"/subscriptions?api-version={RESOURCES_API}").json()["value"]
            assert [s["subscriptionId"] for s in value] == [sub_b]

    def test_operator_registers_a_subscription_for_a_tenant(self, server: Server) -> None:
        tenant_a, tenant_b, sub = _new_tenant(), _new_tenant(), str(uuid.uuid4())
        out = cli(
            server, "subscriptions", "add", sub, "--tenant", tenant_b, "--name", "B's production"
        ).stdout
        assert sub in out and tenant_b in out
        a, b = server.token("--tenant", tenant_a), server.token("--tenant", tenant_b)
        with http(server, a) as ca:
            cloud_error(ca.put(f"{vault_path('rg', 'v', sub)}?api-version={API}", json=vault_body()), 403,
                        "AuthorizationFailed")  # fmt: skip
            cloud_error(
                ca.get(f"/subscriptions/{sub}?api-version={RESOURCES_API}"), 403, "AuthorizationFailed"
            )
            assert sub not in ca.get(f"/subscriptions?api-version={RESOURCES_API}").text
        with http(server, b) as cb:
            create_vault(cb, vault_path("rg", "v", sub))
            got = cb.get(f"/subscriptions/{sub}?api-version={RESOURCES_API}").json()
            assert got["tenantId"] == tenant_b and got["displayName"] == "B's production"
        # a subscription already owned cannot be handed to another tenant
        taken = cli(server, "subscriptions", "add", sub, "--tenant", tenant_a, check=False)
        assert taken.returncode == 1 and tenant_b in taken.stderr
        listed = cli(server, "subscriptions", "list", "--tenant", tenant_b).stdout
        assert sub in listed


# -- 6. secrets never reach the log or a response ---------------------------------------------


def test_secrets_stay_out_of_logs_and_responses(
    make_server: Callable[..., Server], source_pg: PostgresServer, postgres: PostgresServer | None
) -> None:
    server = make_server("--log-level", "debug")
    seen: list[str] = []

    def record(r: httpx.Response) -> None:
        r.read()
        seen.append(f"{r.request.method} {r.request.url} -> {r.status_code} {dict(r.headers)} {r.text}")

    def client(token: str | None) -> httpx.Client:
        return http(server, token, event_hooks={"response": [record]})

    # a source database reached with a distinctive role and password; a wrong one for a failing validation
    good_pw = f"Gd-{uuid.uuid4().hex}-pw"
    wrong_pw = f"Wr-{uuid.uuid4().hex}-pw"
    role = f"hyg_{uuid.uuid4().hex[:8]}"
    source_pg.sql("postgres", f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{good_pw}'")
    database = make_sample_database(source_pg, customers=20, orders=20)

    user_token, app_token = server.token(), server.token("--application")
    registered = add_client(server, "hygiene")
    wrong_secret = f"not-{uuid.uuid4().hex}-the-secret"
    with client(None) as anonymous:
        ok = anonymous.post(f"/{TENANT}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": registered.client_id,
            "client_secret": registered.client_secret, "scope": ARM_SCOPE,
        })  # fmt: skip
        assert ok.status_code == 200, ok.text
        cc_token = ok.json()["access_token"]
        bad = anonymous.post(f"/{TENANT}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": registered.client_id,
            "client_secret": wrong_secret, "scope": ARM_SCOPE,
        })  # fmt: skip
        assert bad.status_code == 401
        basic = base64.b64encode(f"{registered.client_id}:{wrong_secret}".encode()).decode()
        assert anonymous.post(f"/{TENANT}/oauth2/v2.0/token", headers={"Authorization": f"Basic {basic}"},
                              data={"grant_type": "client_credentials", "scope": ARM_SCOPE}).status_code == 401  # fmt: skip
    rejected = [
        server.token("--lifetime", "-3600"),
        own_signed(server, aud="https://vault.azure.net/"),
        jwt.encode(own_claims(), oidc.new_rsa(), algorithm="RS256", headers={"kid": own_kid(server)}),
        jwt.encode(own_claims(), oidc.new_ec(), algorithm="ES256", headers={"kid": own_kid(server)}),
    ]
    for token in rejected:
        with client(token) as c:
            assert c.get(f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES_API}").status_code in (
                401,
                500,
            )

    # a DeepValidation that fails on the wrong password (user token), then a real backup (client credentials)
    with client(user_token) as c:
        failing = Protected(
            server, c, source_pg, database, secret=source_pg.ado(database, user=role, password=wrong_pw)
        )
        op = failing.create().put()
        assert op["status"] == "Failed" and op["error"]["code"] == "UserErrorDatabaseAuthenticationFailed", op
        assert failing.instance()["properties"]["provisioningState"] == "Failed"
        failing.jobs()
    with client(cc_token) as c:
        working = Protected(
            server, c, source_pg, database, secret=source_pg.ado(database, user=role, password=good_pw)
        )
        assert working.create().put()["status"] == "Succeeded"
        job = working.wait_job(working.backup())
        assert job["status"] == "Completed", job
        assert len(working.points()) == 1
    with client(app_token) as c:
        assert c.get(f"{working.env.vault_path}/backupJobs?api-version={API}").status_code == 200
        assert c.get(f"/subscriptions?api-version={RESOURCES_API}").status_code == 200

    time.sleep(0.5)  # let the last log lines reach the file
    log = server.log()
    for expected in ("oauth2/v2.0/token", "status=401", "/backupInstances/", "/backupJobs"):
        assert expected in log, f"the server log does not cover the flow ({expected!r} missing)"
    secrets = {
        "user token": user_token, "app token": app_token, "client-credentials token": cc_token,
        "client secret": registered.client_secret, "wrong client secret": wrong_secret,
        "database password": good_pw, "wrong database password": wrong_pw,
        **{f"rejected token {i}": t for i, t in enumerate(rejected)},
    }  # fmt: skip
    if postgres is not None:
        secrets["state database password"] = postgres.password
    leaked = {name for name, value in secrets.items() if value in log}
    for name, value in secrets.items():  # a token's signature alone is as good as the token
        if "token" in name and value.rsplit(".", 1)[-1] in log:
            leaked.add(f"{name} (signature)")
    assert not leaked, f"secrets in the server log: {sorted(leaked)}"
    assert "Bearer ey" not in log
    responses = "\n".join(seen)
    for name in ("client secret", "wrong client secret", "database password", "wrong database password"):
        assert secrets[name] not in responses, f"{name} in an API response"
    if postgres is not None:
        assert postgres.password not in responses
