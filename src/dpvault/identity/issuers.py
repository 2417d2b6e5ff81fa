"""Trusted external token issuers (an Entra ID tenant, Keycloak, a test's own OpenID provider).

Configured with ``serve --trust-issuer URL`` (OpenID discovery at ``URL/.well-known/openid-configuration``;
or the ``DPVAULT_TRUST_ISSUER`` environment variable, URLs separated by spaces), or ``--identity-config FILE``:

    {"issuers": [{"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                  "discovery": "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
                  "audiences": ["https://management.azure.com/"], "tenant": null}]}

``{tenantid}`` in an issuer matches the token's own ``tid``. Keys come from the JWKS (via PyJWKClient:
cached, refetched when a token names an unknown ``kid``).
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

# Path segments of issuer URLs that are never a tenant.
_NOT_TENANTS = {"v1.0", "v2.0", "oauth2", "realms", ".well-known", "common", "organizations", "consumers"}


@dataclass
class TrustedIssuer:
    issuer: str
    discovery: str | None = None
    jwks: str | None = None
    audiences: tuple[str, ...] = ()
    tenant: str | None = None
    ca_file: str | None = None
    # An unknown kid refetches the JWKS at most this often (a token naming random kids must not
    # turn dpvault into an amplifier against the issuer).
    refresh_cooldown: float = 2.0
    _client: jwt.PyJWKClient | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        pattern = re.escape(self.issuer.rstrip("/")).replace(re.escape("{tenantid}"), "(?P<tid>[^/]+)")
        self._pattern = re.compile(f"^{pattern}/?$", re.IGNORECASE)

    def matches(self, iss: str) -> re.Match[str] | None:
        return self._pattern.match(iss)

    def tenant_allowed(self, tid: str | None, match: re.Match[str]) -> bool:
        """Which tenants this issuer may speak for: the ``{tenantid}`` of a template issuer, else
        the configured ``tenant``, else a tenant named in the issuer URL (Entra's
        ``https://login.microsoftonline.com/<tid>/v2.0``). A tenant-specific issuer never mints
        tokens for other tenants."""
        if "tid" in match.groupdict():
            return tid == match["tid"]
        if self.tenant:
            return tid in (None, self.tenant)
        segments = {s.lower() for s in self.issuer.split("://", 1)[-1].split("/")[1:] if s} - _NOT_TENANTS
        return tid is not None and tid.lower() in segments

    def _context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def signing_key(self, token: str) -> Any:
        """The key the token's ``kid`` names (blocking: call in a thread)."""
        if self._client is None:
            uri = self.jwks
            if uri is None:
                discovery = self.discovery or self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                with urllib.request.urlopen(discovery, timeout=10, context=self._context()) as response:  # noqa: S310 - operator-configured URL
                    uri = json.loads(response.read())["jwks_uri"]
            self._client = jwt.PyJWKClient(
                # the key set is cached and refreshed (a withdrawn key stops working within 10 minutes)
                uri, cache_keys=False, cache_jwk_set=True, lifespan=600, timeout=10, ssl_context=self._context(),
                cooldown_duration=self.refresh_cooldown,
            )  # fmt: skip
        return self._client.get_signing_key_from_jwt(token).key


def load(trust: list[str] | None = None, config_file: Path | None = None) -> list[TrustedIssuer]:
    issuers: list[TrustedIssuer] = []
    for url in trust or []:
        issuers.append(TrustedIssuer(issuer=url.strip()))
    if config_file is not None:
        data = json.loads(config_file.read_text())
        for item in data.get("issuers", []):
            issuers.append(
                TrustedIssuer(
                    issuer=item["issuer"],
                    discovery=item.get("discovery"),
                    jwks=item.get("jwks"),
                    audiences=tuple(item.get("audiences") or ()),
                    tenant=item.get("tenant"),
                    ca_file=item.get("caFile"),
                    refresh_cooldown=float(item.get("refreshCooldown", 2.0)),
                )
            )
    return issuers
