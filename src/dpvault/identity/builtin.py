"""The built-in issuer: just enough of Microsoft Entra ID for unmodified clients to log in.

- ``POST /{tenant}/oauth2/v2.0/token`` (and v1 ``/{tenant}/oauth2/token``): the client-credentials
  grant, for clients registered with ``dpvault clients add``;
- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (and ``/{tenant}/.well-known/...``): OpenID discovery;
- ``GET /{tenant}/discovery/v2.0/keys`` (and ``/common/discovery/keys``): the JWKS;
- ``GET /common/discovery/instance``: MSAL's instance discovery (when pointed here).

These answer without a bearer token (clients call them to get one). Tokens are signed with the
server's key; ``iss`` is ``<server>/<tenant>/v2.0``.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import jwt

from dpvault.arm.http import Call, Reply
from dpvault.identity.clients import ClientRegistry
from dpvault.identity.keys import SigningKey

LIFETIME = 3599
_TENANT = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_GENERIC = {"common", "organizations", "consumers", "adfs"}


def _oauth_error(status: int, error: str, description: str, codes: list[int] | None = None) -> Reply:
    body: dict[str, Any] = {
        "error": error,
        "error_description": description,
        "error_codes": codes or [],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }
    return Reply.json(status, body)


class BuiltinIssuer:
    def __init__(self, key: SigningKey, clients: ClientRegistry, audiences: tuple[str, ...]) -> None:
        self.key = key
        self.clients = clients
        self.audiences = audiences

    def _tenant(self, call: Call) -> str | None:
        tenant = call.params.get("tenant", "common")
        return tenant if _TENANT.match(tenant) else None

    def issuer(self, call: Call, tenant: str) -> str:
        return f"{call.base_url}/{tenant}/v2.0"

    async def openid_configuration(self, call: Call) -> Reply:
        tenant = self._tenant(call)
        if tenant is None:
            return _oauth_error(400, "invalid_tenant", "AADSTS90002: Tenant not found.", [90002])
        base = call.base_url
        return Reply.json(
            200,
            {
                "issuer": self.issuer(call, tenant),
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "response_types_supported": ["token"],
                "grant_types_supported": ["client_credentials"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "subject_types_supported": ["pairwise"],
                "scopes_supported": ["openid", "https://management.azure.com/.default"],
                "tenant_region_scope": "WW",
                "cloud_instance_name": "dpvault",
            },
        )

    async def keys(self, call: Call) -> Reply:
        numbers = self.key.public_key.public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.key.kid,
            "n": b64(numbers.n),
            "e": b64(numbers.e),
        }
        return Reply.json(200, {"keys": [jwk]})

    async def instance_discovery(self, call: Call) -> Reply:
        endpoint = call.query.get("authorization_endpoint", "")
        match = re.match(r"^https://[^/]+/([^/]+)/oauth2/", endpoint)
        tenant = match.group(1) if match else "common"
        host = call.base_url.split("://", 1)[1]
        return Reply.json(
            200,
            {
                "tenant_discovery_endpoint": f"{call.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            },
        )

    async def token_v2(self, call: Call) -> Reply:
        return await self.token(call, "v2")

    async def token_v1(self, call: Call) -> Reply:
        return await self.token(call, "v1")

    async def token(self, call: Call, version: str) -> Reply:
        tenant = self._tenant(call)
        if tenant is None:
            return _oauth_error(400, "invalid_tenant", "AADSTS90002: Tenant not found.", [90002])
        body = await call.body()
        media = call.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return _oauth_error(
                400,
                "invalid_request",
                "AADSTS900144: The request body must be application/x-www-form-urlencoded.",
                [900144],
            )
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return _oauth_error(
                400, "invalid_request", "AADSTS900144: The request body is not valid UTF-8.", [900144]
            )
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = call.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return _oauth_error(
                    401, "invalid_client", "AADSTS7000216: Malformed client credentials.", [7000216]
                )
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            return _oauth_error(
                400,
                "unsupported_grant_type",
                f"AADSTS70003: The grant type '{grant[:40]}' is not supported; use client_credentials.",
                [70003],
            )
        if not client_id or not secret:
            return _oauth_error(
                400, "invalid_request", "AADSTS900144: client_id and client_secret are required.", [900144]
            )
        client = await self.clients.authenticate(client_id, secret)
        if client is None:
            return _oauth_error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided, or unknown client.",
                [7000215],
            )
        if tenant.lower() not in _GENERIC and tenant.lower() != client.tenant.lower():
            return _oauth_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application '{client.client_id}' was not found in the tenant '{tenant}'.",
                [700016],
            )
        audience = self._audience(version, form)
        if audience is None:
            return _oauth_error(
                400,
                "invalid_scope",
                "AADSTS70011: The provided scope is not valid: use https://management.azure.com/.default.",
                [70011],
            )
        now = int(time.time())
        claims = {
            "iss": self.issuer(call, client.tenant),
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME,
            "tid": client.tenant,
            "oid": client.client_id,
            "sub": client.client_id,
            "appid": client.client_id,
            "azp": client.client_id,
            "app_displayname": client.name,
            "idtyp": "app",
            "ver": "2.0",
        }
        token = jwt.encode(
            claims, self.key.private_key, algorithm="RS256", headers={"kid": self.key.kid, "typ": "JWT"}
        )
        reply = {
            "token_type": "Bearer",
            "expires_in": LIFETIME,
            "ext_expires_in": LIFETIME,
            "access_token": token,
        }
        if version == "v1":
            reply.update({"resource": audience, "expires_on": str(now + LIFETIME), "not_before": str(now)})
        return Reply.json(200, reply, {"Cache-Control": "no-store"})

    def _audience(self, version: str | None, form: dict[str, str]) -> str | None:
        if version == "v1":
            requested = [form.get("resource", "")]
        else:
            requested = [
                s.removesuffix("/.default") for s in form.get("scope", "").split() if s.endswith("/.default")
            ]
        for value in requested:
            for allowed in self.audiences:
                if value.rstrip("/") == allowed.rstrip("/"):
                    return allowed
        return None
