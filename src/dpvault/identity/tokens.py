"""Issuing bearer tokens with the server's own key (``dpvault token``, the built-in issuer).

Tokens look like Entra ID access tokens for ARM: RS256, ``aud`` https://management.azure.com/,
``scp`` user_impersonation (users) or ``idtyp`` app (applications), ``tid``/``oid``.
Validation is in ``verifier.py``.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt

from dpvault.identity.keys import SigningKey

LOCAL_ISSUER = "https://sts.dpvault.local/{tenant}/"
AUDIENCES = (
    "https://management.azure.com/",
    "https://management.core.windows.net/",
    "https://management.azure.com",
)


def issue(
    key: SigningKey,
    *,
    tenant: str,
    name: str = "dpvault-user",
    application: bool = False,
    lifetime: int = 24 * 3600,
    audience: str = AUDIENCES[0],
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dpvault:{tenant}:{name}"))
    claims: dict[str, Any] = {
        "iss": LOCAL_ISSUER.format(tenant=tenant),
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "tid": tenant,
        "oid": oid,
        "sub": oid,
        "ver": "1.0",
    }
    if application:
        claims.update({"appid": oid, "azp": oid, "idtyp": "app"})
    else:
        claims.update(
            {"name": name, "upn": f"{name}@dpvault.local", "scp": "user_impersonation", "idtyp": "user"}
        )
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


def is_local_issuer(iss: str) -> bool:
    """Issuers our own key signs as: the CLI's, and the built-in issuer's ``<base>/<tenant>/v2.0``."""
    return bool(
        re.match(r"^https://sts\.dpvault\.local/[^/]+/$", iss)
        or re.match(r"^https?://[^/]+/[^/]+/v2\.0$", iss)
    )
